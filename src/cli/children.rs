//! `treevis children`: the neurons of the blob below that contribute most to a path's last
//! node, signed, with their shares, the edges they act through and, on request, ablation.

use anyhow::Result;
use clap::Args;

use super::args::{positive, signed_share, EngineArgs, InputArgs, Loaded, MethodArgs, SignArg};
use super::output::print_json;
use crate::recon::{self, Child, Path, Ranking, Rule, Sign};

#[derive(Args, Debug)]
pub struct ChildrenArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long)]
    pub path: Path,
    /// How many children.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub k: usize,
    /// Which children: the strongest, the excitatory or the inhibitory ones.
    #[arg(long, value_enum, default_value_t)]
    pub sign: SignArg,
    /// Also zero each child's channel, run the net forward and report how much the
    /// parent's activation drops (a causal check beside the gradient-based weight).
    #[arg(long)]
    pub ablate: bool,
    /// Print JSON: [{blob, channel, weight, path, value, share, via?: [{edge, value, skip}],
    /// drop?}].
    #[arg(long)]
    pub json: bool,
}

/// Where the ablation ranking and the weight ranking disagree, as lines.
pub fn disagreements(kids: &[Child]) -> Vec<String> {
    let drops: Vec<f32> = kids.iter().map(|c| c.drop.unwrap_or(0.0).abs()).collect();
    let by_drop = recon::top_k(&drops, kids.len());
    by_drop
        .iter()
        .enumerate()
        .filter(|&(rank, &i)| rank != i)
        .map(|(rank, &i)| {
            format!(
                "{}:{} is #{} by weight but #{} by ablation",
                kids[i].blob,
                kids[i].channel,
                i + 1,
                rank + 1
            )
        })
        .collect()
}

pub fn run(args: ChildrenArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let rank = Ranking {
        k: args.k,
        sign: args.sign.into(),
        via: true,
    };
    let mut kids = recon::children_ranked(
        &l.model,
        &l.state,
        0,
        &args.method.options(),
        std::slice::from_ref(&args.path),
        &rank,
    )?
    .remove(0);
    if args.ablate {
        recon::ablate(&l.model, &l.state, 0, &args.path, &mut kids)?;
    }
    if kids.is_empty() {
        let why = match (rank.sign, args.method.options().rule) {
            (Sign::Neg, Rule::Guided | Rule::Deconv) => {
                " (guided and deconv pass only positive gradients through a ReLU, so no weight is negative: try --method gradient)"
            }
            _ => "",
        };
        eprintln!(
            "treevis: {} has no {} children: no channel of the blob below has a weight of that sign{why}",
            args.path,
            rank.sign.describe()
        );
    } else if kids.iter().all(|c| c.value == 0.0) {
        eprintln!(
            "treevis: every child of {} has weight 0 (no gradient reaches the blob below under this method)",
            args.path
        );
    }
    if args.json {
        return print_json(&kids);
    }
    for c in &kids {
        let drop = c
            .drop
            .map(|d| format!("  drop {d:12.6}"))
            .unwrap_or_default();
        crate::outln!(
            "{:>7}  {:13.6}{drop}  {}",
            signed_share(c.value, c.share),
            c.value,
            c.path
        )?;
        for e in &c.via {
            crate::outln!("           via {} {:+.6}", e.edge, e.value)?;
        }
    }
    if args.ablate {
        for line in disagreements(&kids) {
            crate::outln!("ablation disagrees: {line}")?;
        }
    }
    Ok(())
}
