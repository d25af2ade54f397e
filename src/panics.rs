//! Panics that become errors. Some code is not ours to fix (a dependency's parser that
//! panics on a crafted file); such calls run through [`catching`], and the process's panic
//! hooks stay quiet for them ([`is_caught`]): the user gets one clear error, the terminal
//! is left alone, and the app goes on.

thread_local! {
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside [`catching`] (a panic hook then only logs).
pub fn is_caught() -> bool {
    CATCHING.with(|c| c.get())
}

/// Runs `f`, turning a panic inside into `Err` with the panic's message.
pub fn catching<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let before = CATCHING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(before));
    r.map_err(|p| message(&*p))
}

/// Runs `f` on a thread of its own with a `stack` of that many bytes (a parser that
/// recurses as deep as its input nests), a panic inside becoming `Err`.
pub fn on_big_stack<T: Send>(stack: usize, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("treevis-parse".into())
            .stack_size(stack)
            .spawn_scoped(s, || catching(f))
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .unwrap_or_else(|p| Err(message(&*p)))
    })
}

/// What a caught panic said.
pub fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_is_an_error_and_the_flag_is_reset() {
        let r: Result<(), String> = super::catching(|| panic!("boom"));
        assert_eq!(r, Err("boom".to_string()));
        assert!(!super::is_caught());
        assert_eq!(super::on_big_stack(1 << 20, || 7), Ok(7));
    }
}
