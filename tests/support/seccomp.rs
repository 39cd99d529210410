//! A seccomp filter that makes this process look like a kernel without
//! `futex_waitv(2)`.

/// Make `futex_waitv` (x86-64 syscall 449) fail with ENOSYS in this process
/// from now on, as a kernel older than 5.16 does. Returns false if the
/// filter could not be installed. Shared by `tests/waitset.rs` and
/// `shmpipe-tokio/tests/async_rings.rs`.
pub fn deny_futex_waitv() -> bool {
    const SYS_FUTEX_WAITV: u32 = 449;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let ld = |k| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k, jt, jf| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k| libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // struct seccomp_data: nr at 0, arch at 4.
    let mut prog = [
        ld(4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        ld(0),
        jeq(SYS_FUTEX_WAITV, 0, 1),
        ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ret(libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `fprog` points to a valid filter that
    // outlives the call (the kernel copies it).
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) == 0
    }
}
