package dev.faultline.guest.workload;

/** A workload that cannot be built as asked (unknown name, impossible parameters); one-line message. */
public final class WorkloadException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public WorkloadException(String message) {
        super(message);
    }
}
