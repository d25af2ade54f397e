//! Caffe `Datum` LMDBs written by an independent writer (`tests/datum/make_datum_lmdb.py`:
//! Python `lmdb` + Google `protobuf`) are read back pixel for pixel, and every command that
//! takes an image takes a record.

use std::path::{Path, PathBuf};

use treevis::data::{self, imagedb, source};

fn fixture() -> (tempfile::TempDir, PathBuf) {
    // a copy, so that opening it (which writes lock.mdb) leaves the repository alone
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("val_lmdb");
    std::fs::create_dir_all(&db).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/datum/lmdb/data.mdb");
    std::fs::copy(src, db.join("data.mdb")).unwrap();
    (dir, db)
}

#[test]
fn records_match_the_independent_writer() {
    let (_d, db) = fixture();
    let paths = source::collect(std::slice::from_ref(&db)).unwrap();
    let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/datum/expected");
    let keys = imagedb::open(&db).unwrap().keys().unwrap();
    assert_eq!(paths.len(), 5);
    assert_eq!(keys.len(), 5);
    for (p, key) in paths.iter().zip(&keys) {
        let name = String::from_utf8(key.clone()).unwrap().replace('/', "__");
        let want = image::open(expected.join(format!("{name}.png")))
            .unwrap()
            .to_rgb8();
        let got = data::load_image(p).unwrap();
        assert_eq!(got, want, "{name}");
        let label: i32 = std::fs::read_to_string(expected.join(format!("{name}.label")))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            imagedb::open(&db).unwrap().get(key).unwrap().label,
            Some(label)
        );
    }
}

#[test]
fn headless_commands_take_a_record() {
    let (_d, db) = fixture();
    let rec = db.join("00000001_cls1/img1.jpg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["labels", "--model", "tiny"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["labels", "--model", "tiny"])
        .arg(db.join("no_such_key"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no such key"), "{err}");
}
