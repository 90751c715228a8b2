package dev.faultline.snapshot;

/**
 * A snapshot cannot be taken or restored: one line naming the file, the part (chunk, field, vCPU)
 * and what was expected against what was found.
 */
public final class SnapshotException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public SnapshotException(String message) {
        super(message);
    }

    public SnapshotException(String message, Throwable cause) {
        super(message, cause);
    }
}
