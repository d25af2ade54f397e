//! The network as a graph: which layer takes which tensors, a topological order, and the
//! articulation tensors (those every path from the input to the output passes through,
//! reference section 8), where the gradient of a path is all in one tensor.
//!
//! Tensors are numbered as backward positions: `0` is the network input, `i + 1` the output
//! of layer `i` (in topological order), so a chain's positions are its layer boundaries.

use std::collections::{HashMap, HashSet};

use super::spec::{BlobSpec, LayerKind, LayerSpec, Spec};

/// The name that stands for the network input in `inputs = [...]`.
pub const INPUT: &str = "data";

/// Layers in topological order with the tensors each takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// Spec index of each layer, in topological order.
    pub order: Vec<usize>,
    /// Per layer (topological index): its input tensors.
    pub inputs: Vec<Vec<usize>>,
}

/// Resolves every layer's inputs (default: the layer listed before it) and sorts the layers
/// topologically, keeping the spec's order where the graph leaves a choice. Errors name the
/// layer: an input that is no layer, a wrong number of inputs, a cycle.
pub fn wire(spec: &Spec) -> Result<Wiring, String> {
    let layers = &spec.layers;
    let index: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    if index.contains_key(INPUT) {
        return Err(format!(
            "a layer is named `{INPUT}`, the name of the network input"
        ));
    }
    // per spec layer: spec indices of its inputs (`None`: the network input)
    let mut srcs: Vec<Vec<Option<usize>>> = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let names: Vec<Option<usize>> = match &l.inputs {
            None => vec![i.checked_sub(1)],
            Some(names) => names
                .iter()
                .map(|n| {
                    if n == INPUT {
                        Ok(None)
                    } else {
                        index.get(n.as_str()).map(|&j| Some(j)).ok_or_else(|| {
                            format!(
                                "layer `{}` takes `{n}`, which is neither a layer nor `{INPUT}`",
                                l.name
                            )
                        })
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        check_arity(l, names.len())?;
        if names.contains(&Some(i)) {
            return Err(format!("layer `{}` takes its own output", l.name));
        }
        srcs.push(names);
    }
    // Kahn's algorithm, always taking the ready layer listed first
    let mut pending: Vec<usize> = srcs
        .iter()
        .map(|s| s.iter().filter(|x| x.is_some()).count())
        .collect();
    let mut users: Vec<Vec<usize>> = vec![vec![]; layers.len()];
    for (i, s) in srcs.iter().enumerate() {
        for j in s.iter().flatten() {
            users[*j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..layers.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(layers.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() < layers.len() {
        let stuck: Vec<&str> = (0..layers.len())
            .filter(|i| pending[*i] > 0)
            .map(|i| layers[i].name.as_str())
            .take(5)
            .collect();
        return Err(format!(
            "the layers form a cycle (through `{}`)",
            stuck.join("`, `")
        ));
    }
    let mut topo = vec![0; layers.len()];
    for (t, &i) in order.iter().enumerate() {
        topo[i] = t;
    }
    let inputs = order
        .iter()
        .map(|&i| {
            srcs[i]
                .iter()
                .map(|s| s.map_or(0, |j| topo[j] + 1))
                .collect()
        })
        .collect();
    Ok(Wiring { order, inputs })
}

fn check_arity(l: &LayerSpec, n: usize) -> Result<(), String> {
    match l.kind.arity() {
        Some(k) if k != n => Err(format!(
            "layer `{}` ({}) takes {k} input(s), given {n}",
            l.name,
            l.kind.type_name()
        )),
        None if n < 2 => Err(format!(
            "layer `{}` ({}) takes two or more inputs, given {n}",
            l.name,
            l.kind.type_name()
        )),
        _ => Ok(()),
    }
}

impl Wiring {
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Whether every layer takes the one before it.
    pub fn is_chain(&self) -> bool {
        self.inputs.iter().enumerate().all(|(i, x)| x == &[i])
    }

    /// Per tensor: the layers that take it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![vec![]; self.len() + 1];
        for (i, ins) in self.inputs.iter().enumerate() {
            for &t in ins {
                if !out[t].contains(&i) {
                    out[t].push(i);
                }
            }
        }
        out
    }

    /// Per tensor: whether every path from the input to the last layer's output passes
    /// through it. Tensors on no such path (a dead branch) are not articulation tensors and
    /// do not break others.
    pub fn articulation(&self) -> Vec<bool> {
        let n = self.len() + 1;
        // live: reachable from the input and reaching the output
        let mut from_input = vec![false; n];
        from_input[0] = true;
        for (i, ins) in self.inputs.iter().enumerate() {
            from_input[i + 1] = ins.iter().any(|&t| from_input[t]);
        }
        let mut to_output = vec![false; n];
        to_output[n - 1] = true;
        for i in (0..self.len()).rev() {
            if to_output[i + 1] {
                for &t in &self.inputs[i] {
                    to_output[t] = true;
                }
            }
        }
        let live: Vec<bool> = (0..n).map(|t| from_input[t] && to_output[t]).collect();
        // t is crossed by an edge u -> layer v with u < t <= v
        let mut reach = vec![0usize; n];
        for (v, ins) in self.inputs.iter().enumerate() {
            if !live[v + 1] {
                continue;
            }
            for &u in ins {
                if live[u] {
                    reach[u] = reach[u].max(v);
                }
            }
        }
        let mut out = vec![false; n];
        let mut furthest = 0usize; // the furthest layer an edge from a tensor below t goes to
        for t in 0..n {
            out[t] = live[t] && (t == 0 || furthest < t);
            if live[t] {
                furthest = furthest.max(reach[t]);
            }
        }
        out
    }
}

/// The tree blobs of reference section 8 for a graph, top first (the importers' default):
/// articulation tensors minus the input, minus the outputs of pooling, flatten, dropout and
/// identity layers, minus tensors whose only user is one activation or one elementwise op
/// with a constant (a scale, a shift: its output stands for them, as a BatchNorm's does),
/// minus an in-graph preprocessing prefix (the input's `(x - mean) / std` in constant
/// elementwise ops); the logits always. Each is named for
/// the outermost module whose last output it is and whose path ends in an index
/// (`layer4.1`, `features.17`), else for the outermost module at all, else `fallback[i]`; a
/// candidate inside another blob's module is left out (the inner layers of a block).
pub fn tree_blobs(
    spec: &Spec,
    scopes: &[Vec<String>],
    fallback: &[String],
) -> Result<Vec<BlobSpec>, String> {
    let wiring = wire(spec)?;
    let art = wiring.articulation();
    let consumers = wiring.consumers();
    // per spec index -> topological index
    let mut topo = vec![0; spec.layers.len()];
    for (t, &i) in wiring.order.iter().enumerate() {
        topo[i] = t;
    }
    let n = spec.layers.len();
    // the last layer (spec order) inside each scope
    let mut last_in: HashMap<&str, usize> = HashMap::new();
    for (i, s) in scopes.iter().enumerate() {
        for sc in s {
            last_in.insert(sc.as_str(), i);
        }
    }
    let top = n - 1;
    let passive_kind = |k: &LayerKind| {
        matches!(
            k,
            LayerKind::Maxpool(_)
                | LayerKind::Avgpool(_)
                | LayerKind::AdaptiveAvgpool { .. }
                | LayerKind::Flatten
                | LayerKind::Dropout { .. }
                | LayerKind::Identity
                | LayerKind::Softmax
        )
    };
    // Where the logits are a pooled or flattened view of a layer (SqueezeNet's conv
    // classifier), walk back to it: the top blob is named for the first layer with a
    // module on the way, and the viewed layer is no blob of its own.
    let mut top_name: Option<String> = scopes[top].last().cloned();
    let mut viewed = None;
    let mut at = top;
    while passive_kind(&spec.layers[at].kind) {
        let Some(src) = spec.layers[at]
            .inputs
            .as_ref()
            .and_then(|i| i.first())
            .and_then(|n| spec.layers.iter().position(|l| &l.name == n))
        else {
            break;
        };
        at = src;
        if top_name.is_none() {
            top_name = scopes[at].last().cloned();
        }
        if !passive_kind(&spec.layers[at].kind) {
            viewed = Some(at);
        }
    }
    let with_constant = |k: &LayerKind| {
        matches!(
            k,
            LayerKind::Add(o) | LayerKind::Sub(o) | LayerKind::Mul(o) | LayerKind::Div(o)
                if o.constant.is_some()
        )
    };
    // layers (spec index) computed from the input by constant elementwise ops alone
    let mut prefix = vec![false; n];
    for &i in &wiring.order {
        let l = &spec.layers[i];
        let t = topo[i];
        prefix[i] = (with_constant(&l.kind) || matches!(l.kind, LayerKind::Identity))
            && wiring.inputs[t]
                .iter()
                .all(|&x| x == 0 || prefix[wiring.order[x - 1]]);
    }
    let mut cands: Vec<(usize, String, Option<String>)> = Vec::new(); // (layer, name, owner scope)
    for i in 0..n {
        let t = topo[i] + 1;
        if !art[t] {
            continue;
        }
        let kind = &spec.layers[i].kind;
        let passive = passive_kind(kind);
        let users = &consumers[t];
        let only_user = (users.len() == 1).then(|| &spec.layers[wiring.order[users[0]]].kind);
        // its activation's output stands for it; a BatchNorm folds into the conv before it
        let stood_for = only_user.is_some_and(|u| {
            super::net::activation_of(u).is_some()
                || matches!(u, LayerKind::Relu | LayerKind::Prelu)
                || with_constant(u)
                || (matches!(u, LayerKind::Batchnorm { .. })
                    && matches!(kind, LayerKind::Conv { .. }))
        });
        if i != top && (passive || stood_for || prefix[i] || viewed == Some(i)) {
            continue;
        }
        let owned: Vec<&String> = scopes[i]
            .iter()
            .filter(|s| last_in.get(s.as_str()) == Some(&i))
            .collect();
        let indexed = owned.iter().find(|s| {
            s.rsplit('.')
                .next()
                .is_some_and(|c| c.parse::<usize>().is_ok())
        });
        let owner = if i == top {
            top_name.clone()
        } else {
            indexed
                .map(|s| s.to_string())
                .or_else(|| owned.first().map(|s| s.to_string()))
        };
        let name = owner.clone().unwrap_or_else(|| fallback[i].clone());
        cands.push((i, name, owner));
    }
    // leave out candidates inside another candidate's module
    let owners: Vec<String> = cands.iter().filter_map(|c| c.2.clone()).collect();
    let mut blobs: Vec<BlobSpec> = Vec::new();
    let mut seen = HashSet::new();
    for (i, name, owner) in cands.into_iter().rev() {
        let inside = i != top
            && owners.iter().any(|o| {
                Some(o) != owner.as_ref()
                    && scopes[i].iter().any(|s| s == o)
                    && owner
                        .as_ref()
                        .is_none_or(|own| own.starts_with(&format!("{o}.")))
            });
        if inside {
            continue;
        }
        let mut nm = clean(&name);
        let mut k = 1;
        while !seen.insert(nm.clone()) {
            nm = format!("{}_{k}", clean(&name));
            k += 1;
        }
        blobs.push(BlobSpec {
            name: nm,
            layer: spec.layers[i].name.clone(),
            mult: 1.0,
            below: None,
        });
    }
    if blobs.is_empty() {
        return Err("the graph has no tree blob".into());
    }
    Ok(blobs)
}

/// A name usable as a blob name (no `/` or `:`).
pub fn clean(s: &str) -> String {
    let s: String = s
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c == '/' || c == ':' || c.is_whitespace() {
                '.'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() {
        "node".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::LayerKind;

    fn spec(layers: Vec<LayerSpec>) -> Spec {
        let mut s = Spec::from_toml(include_str!("../../models/tiny.toml"), "tiny").unwrap();
        s.layers = layers;
        s
    }

    fn residual() -> Vec<LayerSpec> {
        vec![
            LayerSpec::new("a", LayerKind::Relu),
            LayerSpec::new("b", LayerKind::Relu),
            LayerSpec::new("c", LayerKind::Relu),
            LayerSpec::with_inputs("sum", &["a", "c"], LayerKind::Add(Default::default())),
            LayerSpec::new("out", LayerKind::Relu),
        ]
    }

    #[test]
    fn a_chain_is_its_own_order_and_every_tensor_an_articulation() {
        let w = wire(&spec(vec![
            LayerSpec::new("a", LayerKind::Relu),
            LayerSpec::new("b", LayerKind::Relu),
        ]))
        .unwrap();
        assert_eq!(w.order, vec![0, 1]);
        assert!(w.is_chain());
        assert_eq!(w.articulation(), vec![true; 3]);
    }

    #[test]
    fn a_residual_block_hides_its_branch() {
        let w = wire(&spec(residual())).unwrap();
        assert_eq!(w.inputs[3], vec![1, 3]);
        // tensors: data, a, b, c, sum, out: b and c are inside the block
        assert_eq!(w.articulation(), vec![true, true, false, false, true, true]);
        assert_eq!(w.consumers()[1], vec![1, 3]);
    }

    #[test]
    fn layers_listed_out_of_order_are_sorted() {
        let mut l = residual();
        l.swap(3, 4); // `out` listed before the sum it takes
        l[3].inputs = Some(vec!["sum".into()]);
        let w = wire(&spec(l)).unwrap();
        assert_eq!(w.order, vec![0, 1, 2, 4, 3]);
    }

    #[test]
    fn bad_graphs_are_named() {
        let mut cyc = residual();
        cyc[1].inputs = Some(vec!["out".into()]);
        assert!(wire(&spec(cyc)).unwrap_err().contains("cycle"));
        let mut dangling = residual();
        dangling[3].inputs = Some(vec!["a".into(), "nope".into()]);
        let e = wire(&spec(dangling)).unwrap_err();
        assert!(e.contains("`sum`") && e.contains("`nope`"), "{e}");
        let mut one = residual();
        one[3].inputs = Some(vec!["a".into()]);
        assert!(wire(&spec(one)).unwrap_err().contains("two or more"));
    }
}
