//! The ops, one file per family: each holds an op's parameters, its forward, and its
//! backward under every rule (reference sections 2 and 8). Pooling and LRN are thin enough
//! to live as kernels ([`super::kernels`], the CPU backend) called from the graph executor
//! ([`super::net`]), which dispatches every op and keeps the state their backward needs.

pub mod act;
pub mod binary;
pub mod conv;
pub mod linear;
