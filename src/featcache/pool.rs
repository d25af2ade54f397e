//! Work spread over several devices (one model each), answered in job order, each job's
//! input prepared on the host while the devices compute the jobs before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use crate::error::{Error, Result};
use crate::model::Model;

/// Runs `prepare` (host work: decoding, resizing) then `work` (with one of the models) on
/// every job, and hands the results to `sink` in job order. One thread prepares the jobs
/// in order, as many jobs ahead as there are models, while a thread per model works (so a
/// device never waits for the decoding of its next batch), and `sink` runs on the calling
/// thread. The first error from `sink` stops the work.
pub fn ordered<J: Send, P: Send, R: Send>(
    models: &[Model],
    jobs: Vec<J>,
    prepare: impl Fn(J) -> P + Sync,
    work: impl Fn(&Model, P) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    if models.is_empty() {
        return Err(Error::Device("no device".into()));
    }
    let stop = AtomicBool::new(false);
    // a rendezvous channel for one model: one job prepared while it works on the one before
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, P)>(models.len() - 1);
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|s| {
        let (stop, job_rx, work, prepare) = (&stop, &job_rx, &work, &prepare);
        s.spawn(move || {
            for (i, j) in jobs.into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let p = prepare(j);
                if job_tx.send((i, p)).is_err() {
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

/// Which of `models` `m` is (by address: the workers are handed references into the slice).
pub fn index_of(models: &[Model], m: &Model) -> usize {
    models.iter().position(|x| std::ptr::eq(x, m)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        for n in [1, 3] {
            let ms = models(n);
            let mut seen = Vec::new();
            ordered(
                &ms,
                (0..200).collect(),
                |j: u32| j * 2,
                |m, j| {
                    assert!(index_of(&ms, m) < n);
                    j + 1
                },
                |j| {
                    seen.push(j);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, (0..200).map(|j| j * 2 + 1).collect::<Vec<_>>());
            // the sink fails early while many jobs wait: the call returns (it used to hang)
            let r = ordered(
                &ms,
                (0..500).collect(),
                |j: u32| j,
                |_, j| j,
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

    #[test]
    fn the_next_job_is_prepared_while_one_is_worked_on() {
        // the worker of job 0 waits until job 1 has been prepared: it would wait forever
        // if preparing only began once the work was done
        let ms = models(1);
        let (tx, rx) = mpsc::channel::<u32>();
        let rx = Mutex::new(rx);
        let mut seen = Vec::new();
        ordered(
            &ms,
            vec![0u32, 1, 2],
            |j| {
                let _ = tx.send(j);
                j
            },
            |_, j| {
                let rx = rx.lock().unwrap();
                // job j was prepared before it came here; job j + 1 is while it works
                if j < 2 {
                    loop {
                        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
                            Ok(p) if p > j => break,
                            Ok(_) => {}
                            Err(_) => panic!("job {} was not prepared while job {j} ran", j + 1),
                        }
                    }
                }
                j
            },
            |j| {
                seen.push(j);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, [0, 1, 2]);
    }
}
