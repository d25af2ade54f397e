//! The backward rules (reference sections 2 and 8): which visualization a backward pass
//! computes. At the bottom of the engine: every op's backward takes one.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The ReLU backward rule: which visualization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Plain gradient: `g * [x > 0]`.
    Gradient,
    /// Zeiler & Fergus deconvnet: `g * [g > 0]`.
    Deconv,
    /// Guided backpropagation: `g * [x > 0] * [g > 0]`.
    #[default]
    Guided,
    /// cnn_treevis's GUIDED_NEG: `g * [x > 0] * [g < 0]`.
    GuidedNeg,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::Gradient, Rule::Deconv, Rule::Guided, Rule::GuidedNeg];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Gradient => "gradient",
            Rule::Deconv => "deconv",
            Rule::Guided => "guided",
            Rule::GuidedNeg => "guided-neg",
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Rule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown method `{s}` (gradient, deconv, guided, guided-neg)"
                ))
            })
    }
}
