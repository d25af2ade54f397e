//! `docs/slurm-featcache.sh` on a real one-node Slurm: the test starts munged, slurmctld and
//! slurmd as the current user (root is not needed), everything under a temporary folder
//! (key, socket, config, state, spool, logs; nothing in /etc or /run), submits the two
//! command lines of the script's header exactly as written there, with only the environment
//! set (N, DATA, OUT, MODEL, TOPK, BATCH, TREEVIS), and checks that the merged cache equals
//! one `treevis cache build` of the same images, record for record (a reconstruction's PNG
//! may be off by 1 in a few values: see `same`).
//!
//! Needs Debian's `slurm-wlm` and `munge` (`.ci/run` installs them); without them the test
//! fails and says so.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use treevis::featcache::FeatureCache;

const BIN: &str = env!("CARGO_BIN_EXE_treevis");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/slurm-featcache.sh");
const IMAGES: u64 = 300;
const SHARDS: usize = 4;
const TOPK: &str = "4";
const BATCH: &str = "16";

/// The path of an installed program (the daemons live in /usr/sbin, which a user's PATH may
/// lack); a missing one fails the test with what to install.
fn need(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{tool}` is not installed: apt-get install {package} (.ci/run installs it)")
        })
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The one-node cluster: its daemons, ended (jobs first) however the test ends.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let munged = need("munged", "munge");
        let slurmctld = need("slurmctld", "slurm-wlm");
        let slurmd = need("slurmd", "slurm-wlm");
        need("sbatch", "slurm-wlm");
        need("scontrol", "slurm-wlm");
        // munged refuses a socket in a folder that others cannot enter
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for d in ["state", "spool"] {
            std::fs::create_dir(dir.join(d)).unwrap();
        }
        let key = dir.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut bytes)
            .unwrap();
        std::fs::write(&key, &bytes).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let conf = dir.join("slurm.conf");
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            conf: conf.clone(),
            daemons: Vec::new(),
        };
        let socket = dir.join("munge.sock");
        let f = |name: &str| dir.join(name).display().to_string();
        cluster.spawn(
            "munged",
            Command::new(munged).args([
                "--foreground".to_string(),
                format!("--key-file={}", key.display()),
                format!("--socket={}", socket.display()),
                format!("--pid-file={}", f("munged.pid")),
                format!("--log-file={}", f("munged.log")),
                format!("--seed-file={}", f("munged.seed")),
            ]),
        );
        cluster.wait("munged's socket", 20, |_| socket.exists());

        // the node as slurmd sees it (`NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..`)
        let o = Command::new(&slurmd).arg("-C").output().unwrap();
        let node = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(node.starts_with("NodeName="), "slurmd -C: {node}");
        let host = node["NodeName=".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        std::fs::write(dir.join("plugstack.conf"), "").unwrap();
        // no cgroups, no accounting, no MPI: processes tracked by their parents, daemons
        // and jobs as this user
        let text = format!(
            "ClusterName=treevis-test\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={}\n\
             SlurmdPort={}\n\
             SlurmUser={user}\n\
             SlurmdUser={user}\n\
             AuthType=auth/munge\n\
             CredType=cred/munge\n\
             AuthInfo=socket={}\n\
             StateSaveLocation={}\n\
             SlurmdSpoolDir={}\n\
             SlurmctldPidFile={}\n\
             SlurmdPidFile={}\n\
             SlurmctldLogFile={}\n\
             SlurmdLogFile={}\n\
             PlugStackConfig={}\n\
             MailProg=/bin/true\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             MpiDefault=none\n\
             SwitchType=switch/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             ReturnToService=2\n\
             {node} NodeAddr=127.0.0.1 State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            socket.display(),
            f("state"),
            f("spool"),
            f("slurmctld.pid"),
            f("slurmd.pid"),
            f("slurmctld.log"),
            f("slurmd.log"),
            f("plugstack.conf"),
        );
        std::fs::write(&conf, text).unwrap();
        // -D: in the foreground, so that they are our children; -i: no state to recover
        cluster.spawn("slurmctld", Command::new(slurmctld).args(["-D", "-i"]));
        cluster.spawn("slurmd", Command::new(slurmd).arg("-D"));
        cluster.wait("the node to be idle", 60, |c| {
            let o = c.cmd("sinfo").args(["-h", "-o", "%T"]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim() == "idle"
        });
        cluster
    }

    /// A Slurm command for this cluster, none of the caller's Slurm settings (the test may
    /// itself run in a Slurm job).
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("SLURM_") || k.starts_with("SBATCH_") || k.starts_with("SQUEUE_") {
                c.env_remove(&*k);
            }
        }
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn spawn(&mut self, name: &'static str, c: &mut Command) {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let child = c
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.daemons.push((name, child));
    }

    /// The daemons' last words, for failure messages.
    fn logs(&self) -> String {
        ["munged", "slurmctld", "slurmd"]
            .iter()
            .map(|n| format!("--- {n}:\n{}", tail(&self.dir.join(format!("{n}.out")))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait(&mut self, what: &str, secs: u64, done: impl Fn(&Cluster) -> bool) {
        let start = Instant::now();
        while !done(self) {
            let ended = self
                .daemons
                .iter_mut()
                .find_map(|(name, child)| Some((*name, child.try_wait().unwrap()?)));
            if let Some((name, s)) = ended {
                panic!("{name} ended ({s}) waiting for {what}\n{}", self.logs());
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "no {what} after {secs} s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The fields of a job that a failure message needs.
    fn brief(job: &std::collections::HashMap<String, String>) -> String {
        [
            "JobId",
            "ArrayJobId",
            "ArrayTaskId",
            "JobState",
            "Reason",
            "ExitCode",
        ]
        .iter()
        .filter_map(|k| Some(format!("{k}={}", job.get(*k)?)))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// `scontrol show job ID -o`: one line per job (an array: per task), as `key=value` maps.
    fn jobs(&self, id: &str) -> Vec<std::collections::HashMap<String, String>> {
        let o = self
            .cmd("scontrol")
            .args(["show", "job", id, "-o"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // jobs first (their slurmstepd is no child of ours), then the daemons, newest first
        let _ = self.cmd("scancel").args(["--partition", "test"]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let o = self.cmd("squeue").args(["-h", "-t", "all"]).output();
            let busy = o.map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.contains(" R ") || l.contains(" CG "))
            });
            if !busy.unwrap_or(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        while let Some((_, mut child)) = self.daemons.pop() {
            // SIGTERM lets slurmctld end its slurmscriptd too
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The submission lines of the script's header: the first block indented in its comment.
fn documented_submission() -> String {
    let script = std::fs::read_to_string(SCRIPT).unwrap();
    let lines: Vec<&str> = script
        .lines()
        .skip_while(|l| !l.starts_with("#     "))
        .take_while(|l| l.starts_with("#     "))
        .map(|l| &l["#     ".len()..])
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("--array") && lines[1].contains("--dependency"));
    lines.join("\n")
}

fn records(p: &Path) -> Vec<(String, Vec<u8>)> {
    FeatureCache::open(p).unwrap().records().unwrap()
}

/// The merged cache against one build: the same records, byte for byte (lists, quantile
/// samples, meta, dataset), except that a reconstruction's PNG may differ by 1 in a few
/// pixel values. Why: the crops pass forwards its images in batches and reconstructs each
/// image's crops in one batched backward, and a shard batches other images together and
/// keeps other (more) rows for an image than the whole build; the linear layers take another
/// kernel above `SMALL_ROWS` rows (src/model/kernels.rs) that sums in another order, so the
/// last bits of a gradient depend on how many rows share a pass, and now and then a
/// normalised pixel rounds the other way. Everything else of a crop (entry, box, image crop)
/// must be equal.
fn same(whole: &Path, merged: &Path) {
    let (rw, rm) = (records(whole), records(merged));
    assert_eq!(rw.len(), rm.len(), "record counts differ");
    let (cw, cm) = (
        FeatureCache::open(whole).unwrap(),
        FeatureCache::open(merged).unwrap(),
    );
    let (mut crops, mut off_by_one) = (0, Vec::new());
    for ((kw, vw), (km, vm)) in rw.iter().zip(&rm) {
        assert_eq!(kw, km);
        let Some(key) = kw.strip_prefix("crop/") else {
            assert!(vw == vm, "record `{kw}` differs");
            continue;
        };
        crops += 1;
        if vw == vm {
            continue;
        }
        let mut parts = key.rsplitn(3, '/');
        let rank: usize = parts.next().unwrap().parse().unwrap();
        let channel: usize = parts.next().unwrap().parse().unwrap();
        let blob = parts.next().unwrap();
        let (a, b) = (
            &cw.crops(blob, channel).unwrap()[rank],
            &cm.crops(blob, channel).unwrap()[rank],
        );
        assert_eq!(a.entry, b.entry, "{kw}");
        assert_eq!(a.bbox, b.bbox, "{kw}");
        assert!(a.image_png == b.image_png, "{kw}: the image crops differ");
        let (ra, rb) = (
            image::load_from_memory(&a.recon_png).unwrap().to_rgb8(),
            image::load_from_memory(&b.recon_png).unwrap().to_rgb8(),
        );
        assert_eq!(ra.dimensions(), rb.dimensions(), "{kw}");
        let d: Vec<u8> = ra
            .as_raw()
            .iter()
            .zip(rb.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .filter(|&d| d > 0)
            .collect();
        assert!(
            d.iter().all(|&d| d == 1) && d.len() * 1000 <= ra.as_raw().len(),
            "{kw}: {} of {} values differ, by up to {:?}",
            d.len(),
            ra.as_raw().len(),
            d.iter().max()
        );
        off_by_one.push(kw.clone());
    }
    eprintln!(
        "{} records equal; of {crops} crops {} differ by 1 in a few values: {off_by_one:?}",
        rw.len() - off_by_one.len(),
        off_by_one.len()
    );
    assert!(off_by_one.len() * 100 <= crops, "{off_by_one:?}");
}

#[test]
fn the_documented_array_and_merge_equal_one_build() {
    let d = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let cluster = Cluster::start(d.path());
    eprintln!("cluster up after {:?}", t0.elapsed());
    let data = d.path().join("data");
    treevis::cli::write_demo_gallery(&data, IMAGES, 99).unwrap();
    let out = d.path().join("out");
    // submitted from a folder of its own (the logs land there) with `docs/` in it
    let sub = d.path().join("submit");
    std::fs::create_dir(&sub).unwrap();
    std::os::unix::fs::symlink(Path::new(SCRIPT).parent().unwrap(), sub.join("docs")).unwrap();
    let mut submit = cluster.cmd("bash");
    for k in [
        "DEVICE",
        "WEIGHTS",
        "LAYERS",
        "METHOD",
        "CHECKPOINT",
        "RAYON_NUM_THREADS",
    ] {
        submit.env_remove(k);
    }
    let o = submit
        .current_dir(&sub)
        .env("N", SHARDS.to_string())
        .env("DATA", &data)
        .env("OUT", &out)
        .env("MODEL", "demo")
        .env("TOPK", TOPK)
        .env("BATCH", BATCH)
        .env("TREEVIS", BIN)
        .arg("-euc")
        .arg(format!("{}\necho \"array $jid\"", documented_submission()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let array = said
        .lines()
        .find_map(|l| l.strip_prefix("array "))
        .unwrap()
        .trim()
        .to_string();
    let merge = said
        .lines()
        .find_map(|l| l.strip_prefix("Submitted batch job "))
        .unwrap_or_else(|| panic!("{said}"))
        .trim()
        .to_string();
    assert!(array.parse::<u64>().is_ok(), "{said}");

    // until the merge is over; a failed task fails the test with its log (the merge would
    // wait for it forever)
    let log = |id: &str| {
        let pattern = format!("treevis-cache-{id}");
        std::fs::read_dir(&sub)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&pattern))
            .map(|e| format!("--- {:?}:\n{}", e.file_name(), tail(&e.path())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let done = ["COMPLETED"];
    let over = [
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
    ];
    let start = Instant::now();
    loop {
        let tasks = cluster.jobs(&array);
        for t in &tasks {
            let s = t.get("JobState").map(String::as_str).unwrap_or("");
            assert!(!over.contains(&s), "{}\n{}", Cluster::brief(t), log(&array));
        }
        let m = cluster.jobs(&merge);
        let s = m
            .first()
            .and_then(|m| m.get("JobState"))
            .cloned()
            .unwrap_or_default();
        assert!(
            !over.contains(&s.as_str()),
            "merge: {:?}\n{}",
            m.iter().map(Cluster::brief).collect::<Vec<_>>(),
            log(&merge)
        );
        if done.contains(&s.as_str()) {
            assert_eq!(
                tasks.len(),
                SHARDS,
                "{:?}",
                tasks.iter().map(Cluster::brief).collect::<Vec<_>>()
            );
            for t in tasks.iter().chain(&m) {
                assert_eq!(t["JobState"], "COMPLETED", "{}", Cluster::brief(t));
                assert_eq!(t["ExitCode"], "0:0", "{}", Cluster::brief(t));
            }
            let mut ids: Vec<&str> = tasks.iter().map(|t| t["ArrayTaskId"].as_str()).collect();
            ids.sort();
            assert_eq!(ids, ["0", "1", "2", "3"]);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "jobs not done after 300 s: {:?}\n{}\n{}\n{}",
            tasks
                .iter()
                .chain(&m)
                .map(Cluster::brief)
                .collect::<Vec<_>>(),
            log(&array),
            log(&merge),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("array and merge done after {:?}", t0.elapsed());
    drop(cluster);

    // the merge job's log: what `cache merge` and `cache info` said
    let merged_log = log(&merge);
    assert!(
        merged_log.contains(&format!("merged {SHARDS} shards ({IMAGES} images)"))
            && merged_log.contains("(complete)")
            && merged_log.contains(&format!("top {TOPK} per neuron")),
        "{merged_log}"
    );
    for i in 0..SHARDS {
        assert!(out.join(format!("shard-{i}-of-{SHARDS}")).is_dir());
    }

    // one build of the same images with the script's settings
    let whole = d.path().join("whole");
    let o = Command::new(BIN)
        .args(["cache", "build", "--quiet", "--model", "demo", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&whole)
        .args(["--device", "cpu", "--batch", BATCH, "--top-k", TOPK])
        .args(["--method", "guided", "--checkpoint", "2048"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(&whole, &out.join("merged"));
    let c = FeatureCache::open(&out.join("merged")).unwrap();
    assert_eq!((c.meta.images, c.skipped.len()), (IMAGES, 0));
    eprintln!("whole test {:?}", t0.elapsed());
}
