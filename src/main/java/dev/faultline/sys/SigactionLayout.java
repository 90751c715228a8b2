package dev.faultline.sys;

/**
 * glibc's {@code struct sigaction} on x86-64 (152 bytes; not the kernel's layout, glibc translates).
 *
 * <pre>
 *   0 | sa_handler / sa_sigaction (pointer; SIG_DFL 0, SIG_IGN 1) |
 *   8 | sa_mask (glibc sigset_t, 128 bytes)                       |
 * 136 | sa_flags i32 | padding i32 |
 * 144 | sa_restorer (pointer) |
 * 152
 * </pre>
 */
public final class SigactionLayout {
    private SigactionLayout() {}

    public static final long HANDLER = 0, MASK = 8, FLAGS = 136, RESTORER = 144;
    public static final long SIZE = 152;
}
