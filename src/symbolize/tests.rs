use super::*;

/// What `stack.rs` does today with `backtrace::resolve`, for comparison.
///
/// `backtrace::resolve(a)` looks up `a - 1` (it takes `a` for a return
/// address), and `stack.rs` passes it `ip - 1`, so today's frames are those
/// of `ip - 2`. For a return address that is the same instruction (x86_64
/// calls are at least 2 bytes long); for any other address it is the
/// previous instruction, possibly another function (seen: `malloc`'s entry
/// point resolved to the end of the code before it). `resolve(pc)` here
/// looks up `pc` itself, so it is compared with `bt_resolve(pc + 1)`.
fn bt_resolve(pc: usize) -> Vec<Sym> {
    let mut out = Vec::new();
    backtrace::resolve(pc as *mut core::ffi::c_void, |sym| {
        out.push(Sym {
            function: match sym.name() {
                Some(n) => format!("{n:#}"),
                None => "??".to_string(),
            },
            file: sym.filename().map(|p| p.display().to_string()),
            line: sym.lineno(),
        });
    });
    if out.is_empty() {
        out.push(Sym::unknown(pc));
    }
    out
}

/// `n` code addresses spread over the test binary's functions (the middle
/// of every k-th defined function of its symbol table).
fn text_addresses(n: usize) -> Vec<usize> {
    use object::read::elf::{FileHeader, Sym as _};
    let exe = &modules::list()[0];
    let data = std::fs::read("/proc/self/exe").unwrap();
    let elf = object::elf::FileHeader64::<object::NativeEndian>::parse(&*data).unwrap();
    let endian = elf.endian().unwrap();
    let sections = elf.sections(endian, &*data).unwrap();
    let syms = sections
        .symbols(endian, &*data, object::elf::SHT_SYMTAB)
        .unwrap();
    let mut funcs: Vec<(u64, u64)> = syms
        .iter()
        .filter(|s| s.st_type() == object::elf::STT_FUNC)
        .filter(|s| s.st_shndx(endian) != object::elf::SHN_UNDEF)
        .map(|s| (s.st_value(endian), s.st_size(endian)))
        .filter(|&(_, size)| size >= 2)
        .collect();
    funcs.sort_unstable();
    funcs.dedup_by_key(|f| f.0);
    assert!(funcs.len() >= n, "only {} functions", funcs.len());
    let step = funcs.len() / n;
    funcs
        .iter()
        .step_by(step)
        .take(n)
        .map(|&(a, size)| exe.bias + (a + size / 2) as usize)
        .collect()
}

/// Return addresses of this very stack, minus one (inside the call).
#[inline(never)]
fn this_stack() -> Vec<usize> {
    let mut pcs = Vec::new();
    backtrace::trace(|f| {
        let ip = f.ip() as usize;
        if ip > 1 {
            pcs.push(ip - 1);
        }
        true
    });
    pcs
}

/// Compares with `backtrace::resolve` of the same instruction (see
/// [`bt_resolve`]; `shift` 1 for that, 0 for today's `stack.rs` call):
/// function, file and line of every frame, inlined chain included. Returns
/// the mismatches.
fn mismatches(s: &mut Symbolizer, pcs: &[usize], shift: usize) -> Vec<String> {
    let ours = s.resolve_batch(pcs);
    pcs.iter()
        .zip(ours)
        .filter_map(|(&pc, ours)| {
            let theirs = bt_resolve(pc + shift);
            (*ours != *theirs).then(|| format!("{pc:#x}:\n ours   {ours:?}\n theirs {theirs:?}"))
        })
        .collect()
}

#[test]
fn matches_backtrace_on_this_stack() {
    let pcs = this_stack();
    assert!(pcs.len() > 3);
    let mut s = Symbolizer::new(DEFAULT_BUDGET);
    // The same instruction, and also exactly what `stack.rs` gets today
    // (`ip - 1` and `ip - 2` lie in the same call instruction).
    for shift in [1, 0] {
        let bad = mismatches(&mut s, &pcs, shift);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
    let frames: Vec<Sym> = s.resolve_batch(&pcs).concat();
    let me = frames
        .iter()
        .find(|f| f.function.ends_with("matches_backtrace_on_this_stack"))
        .unwrap_or_else(|| panic!("{frames:#?}"));
    assert!(me.file.as_deref().unwrap().ends_with("tests.rs"), "{me:?}");
    assert!(me.line.is_some());
    // Inlined frames are there too (std's, inlined into the test harness).
    assert!(s.resolve_batch(&pcs).iter().any(|f| f.len() > 1));
}

#[test]
fn matches_backtrace_on_many_functions() {
    let pcs = text_addresses(400);
    let mut s = Symbolizer::new(DEFAULT_BUDGET);
    let bad = mismatches(&mut s, &pcs, 1);
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        pcs.len(),
        bad[..bad.len().min(10)].join("\n")
    );
    let st = s.stats();
    assert_eq!(st.resolved, pcs.len() as u64);
    assert_eq!(st.unknown, 0, "{st:?}");
    // A second pass is answered from the cache.
    s.resolve_batch(&pcs);
    assert_eq!(s.stats().cache_hits, pcs.len() as u64);
}

#[test]
fn shared_library_address_resolves() {
    let pc = libc::malloc as *const () as usize;
    let mut s = Symbolizer::new(DEFAULT_BUDGET);
    let syms = s.resolve_batch(&[pc]).pop().unwrap();
    assert!(syms[0].function.contains("malloc"), "{syms:?}");
    assert_eq!(*syms, *bt_resolve(pc + 1));
    let path = &s.entries.iter().find(|e| e.module.contains(pc)).unwrap();
    assert!(
        path.module.path.to_string_lossy().contains("libc"),
        "{:?}",
        path.module
    );
}

#[test]
fn unknown_addresses_give_hex() {
    let heap = Box::new(7u64);
    let pcs = [0x10, &*heap as *const u64 as usize, usize::MAX];
    let mut s = Symbolizer::new(DEFAULT_BUDGET);
    let out = s.resolve_batch(&pcs);
    for (pc, syms) in pcs.iter().zip(out) {
        assert_eq!(*syms, [Sym::unknown(*pc)]);
        assert_eq!(syms[0].function, format!("{pc:#x}"));
    }
    assert_eq!(s.stats().unknown, 3);
}

#[test]
fn unreadable_object_falls_back() {
    let mut s = Symbolizer::new(DEFAULT_BUDGET);
    s.refresh_modules();
    let pc = text_addresses(1)[0];
    let e = s
        .entries
        .iter_mut()
        .find(|e| e.module.contains(pc))
        .unwrap();
    e.module.path = "/nonexistent/leakscope-test".into();
    assert_eq!(*s.resolve_batch(&[pc])[0], [Sym::unknown(pc)]);
    let st = s.stats();
    assert_eq!((st.load_failures, st.unknown), (1, 1));
}

/// A copy of the test binary with `damage` applied, as a scratch file.
fn damaged_copy(tag: &str, damage: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut data = std::fs::read("/proc/self/exe").unwrap();
    damage(&mut data);
    let path =
        std::env::temp_dir().join(format!("leakscope-symbolize-{tag}-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    path
}

/// Garbage, a truncated file and corrupt DWARF: no panic, a fallback.
#[test]
fn corrupt_objects_fall_back() {
    use object::read::elf::{FileHeader, SectionHeader};
    let pcs = text_addresses(50);
    let garbage = damaged_copy("garbage", |d| {
        d.truncate(1 << 16);
        for (i, b) in d.iter_mut().enumerate().skip(64) {
            *b = (i * 131 % 251) as u8;
        }
    });
    let truncated = damaged_copy("truncated", |d| d.truncate(1 << 16));
    let bad_dwarf = damaged_copy("dwarf", |d| {
        let elf = object::elf::FileHeader64::<object::NativeEndian>::parse(&**d).unwrap();
        let endian = elf.endian().unwrap();
        let sections = elf.sections(endian, &**d).unwrap();
        let mut damage = Vec::new();
        for name in [".debug_info", ".debug_line", ".debug_abbrev"] {
            let (_, h) = sections.section_by_name(endian, name.as_bytes()).unwrap();
            let (off, len) = h.file_range(endian).unwrap();
            damage.push((off as usize, len as usize));
        }
        for (off, len) in damage {
            // Every 7th byte of each section overwritten.
            for i in (off..off + len).step_by(7) {
                d[i] ^= 0xa5;
            }
        }
    });
    for path in [&garbage, &truncated, &bad_dwarf] {
        let mut s = Symbolizer::new(DEFAULT_BUDGET);
        s.refresh_modules();
        let e = s
            .entries
            .iter_mut()
            .find(|e| e.module.contains(pcs[0]))
            .unwrap();
        e.module.path = path.clone();
        let out = s.resolve_batch(&pcs);
        assert_eq!(out.len(), pcs.len());
        assert!(out.iter().all(|f| !f.is_empty()));
        let st = s.stats();
        if path == &bad_dwarf {
            // The symbol table is intact: names without (or with wrong)
            // lines, never a panic.
            assert_eq!(st.load_failures, 0, "{st:?}");
        } else {
            assert_eq!((st.load_failures, st.unknown), (1, 50), "{st:?}");
        }
    }
    for p in [garbage, truncated, bad_dwarf] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn stays_under_a_tiny_budget_and_stays_correct() {
    let mut pcs = text_addresses(20);
    pcs.push(libc::malloc as *const () as usize);
    pcs.push(libc::free as *const () as usize);
    pcs.extend(this_stack());
    let reference = Symbolizer::new(DEFAULT_BUDGET).resolve_batch(&pcs);
    let budget = 256 << 10;
    let mut s = Symbolizer::new(budget);
    for round in 0..2 {
        for (pc, want) in pcs.iter().zip(&reference) {
            let got = s.resolve_batch(&[*pc]).pop().unwrap();
            assert_eq!(&got, want, "round {round}");
            let held = s.stats().held_bytes;
            assert!(held <= budget as u64, "{held} > {budget}");
        }
    }
    let st = s.stats();
    assert!(st.evictions > 0 && st.loads > 2, "{st:?}");
    // And a whole batch at once.
    assert_eq!(s.resolve_batch(&pcs), reference);
    assert!(s.stats().held_bytes <= budget as u64);
    // Raising the budget keeps things; lowering it drops them at once.
    s.set_budget(DEFAULT_BUDGET);
    s.resolve_batch(&text_addresses(90));
    assert!(s.stats().contexts >= 1);
    s.set_budget(0);
    let st = s.stats();
    assert_eq!((st.contexts, st.cached_addrs), (0, 0), "{st:?}");
}

#[test]
fn public_api_and_fork_hooks() {
    let pcs = this_stack();
    let many = resolve_many(&pcs);
    assert_eq!(many.len(), pcs.len());
    assert_eq!(resolve(pcs[0]), many[0]);
    let names: Vec<&str> = many.iter().map(|f| f[0].function.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("::this_stack")),
        "{names:?}"
    );
    let st = stats();
    assert!(st.cached_addrs >= pcs.len() as u64 - 1, "{st:?}");
    assert!(st.held_bytes > 0 && st.held_bytes <= st.budget_bytes);
    // The lock is free again (as the fork protocol needs it).
    drop(lock());
    assert_eq!(resolve(pcs[0]), many[0]);
    assert!(!crate::alloc::guard::is_entered());
}

#[test]
fn demangles_as_backtrace_prints() {
    assert_eq!(
        demangle(b"_ZN4core3fmt5write17h0123456789abcdefE"),
        "core::fmt::write"
    );
    assert_eq!(demangle(b"malloc"), "malloc");
    assert_eq!(demangle(b"a\xffb"), "a\u{fffd}b");
}
