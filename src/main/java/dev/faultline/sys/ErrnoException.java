package dev.faultline.sys;

/**
 * A failed system call or hypervisor operation: names the call, the errno (with its message)
 * and the object it concerned, e.g. {@code KVM_SET_USER_MEMORY_REGION2 on vm (slot 1, gpa 0x100000): EINVAL (Invalid argument)}.
 * Both backends throw it, so VMM code handles the kvm and ref backends alike.
 */
public class ErrnoException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String call;
    private final int errno;
    private final String subject;

    public ErrnoException(String call, int errno, String subject) {
        this(call, errno, subject, null);
    }

    public ErrnoException(String call, int errno, String subject, String detail) {
        super(call + (subject == null || subject.isEmpty() ? "" : " on " + subject) + ": " + Errno.describe(errno)
                + (detail == null || detail.isEmpty() ? "" : " (" + detail + ")"));
        this.call = call;
        this.errno = errno;
        this.subject = subject;
    }

    public String call() { return call; }
    public int errno() { return errno; }
    public String subject() { return subject; }
}
