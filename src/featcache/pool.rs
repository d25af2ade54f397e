//! Work spread over several devices (one model each), answered in job order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use crate::error::Result;
use crate::model::Model;

/// Runs `work` on every job, on as many threads as there are models (one model each), and
/// hands the results to `sink` in job order. The first error from `sink` stops the work.
pub fn ordered<J: Send, R: Send>(
    models: &[Model],
    jobs: Vec<J>,
    work: impl Fn(&Model, J) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    if models.len() <= 1 {
        let m = &models[0];
        for j in jobs {
            sink(work(m, j))?;
        }
        return Ok(());
    }
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, J)>(models.len());
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|s| {
        let (stop, job_rx, work) = (&stop, &job_rx, &work);
        s.spawn(move || {
            for (i, j) in jobs.into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) || job_tx.send((i, j)).is_err() {
                    return;
                }
            }
        });
        for m in models {
            let res_tx = res_tx.clone();
            // after a failure the workers keep taking (and dropping) jobs until the feeder
            // stops, so that nobody is left blocked on a full channel
            s.spawn(move || loop {
                let next = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((i, j)) = next else { return };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                if res_tx.send((i, work(m, j))).is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
        drop(res_tx);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for (i, r) in res_rx {
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&next) {
                next += 1;
                if let Err(e) = sink(r) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::model::WeightsSource;

    fn models(n: usize) -> Vec<Model> {
        (0..n)
            .map(|_| {
                crate::catalog::load("tiny", &WeightsSource::Default, &candle_core::Device::Cpu)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn results_come_in_job_order_and_a_failing_sink_stops_every_worker() {
        let ms = models(3);
        let mut seen = Vec::new();
        ordered(
            &ms,
            (0..200).collect(),
            |_, j: u32| j,
            |j| {
                seen.push(j);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        // the sink fails early while many jobs wait: the call returns (it used to hang)
        let r = ordered(
            &ms,
            (0..500).collect(),
            |_, j: u32| j,
            |j| {
                if j == 2 {
                    Err(Error::Input("disk full".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(r.unwrap_err().to_string().contains("disk full"));
    }
}
