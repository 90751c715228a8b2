package dev.faultline.sys;

/**
 * The kernel's {@code struct sigaction} on x86-64, as rt_sigaction(2) takes it (32 bytes; glibc's own
 * struct, which sigaction(3) translates, is larger and ordered differently).
 *
 * <pre>
 *   0 | sa_handler (pointer; SIG_DFL 0, SIG_IGN 1)   |
 *   8 | sa_flags (unsigned long)                     |
 *  16 | sa_restorer (pointer; needed only with a handler) |
 *  24 | sa_mask (the kernel's 64-bit sigset)         |
 *  32
 * </pre>
 */
public final class SigactionLayout {
    private SigactionLayout() {}

    public static final long HANDLER = 0, FLAGS = 8, RESTORER = 16, MASK = 24;
    public static final long SIZE = 32;
}
