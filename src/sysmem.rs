//! How much memory the machine has to give, so that a request that cannot fit is refused
//! with a message instead of ending in an allocation abort or the kernel's OOM killer.

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux); `None` where it cannot be read.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn meminfo_is_read_in_bytes() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(super::parse_meminfo(t), Some(20_000_000 * 1024));
        assert_eq!(super::parse_meminfo("MemTotal: 5 kB\n"), None);
    }
}
