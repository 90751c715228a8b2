package dev.faultline.guest.workload;

/** Guest memory after a run differs from what the workload must have left there. */
public final class WorkloadMismatchException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final long mismatches;
    private final long firstGpa;

    public WorkloadMismatchException(String message, long mismatches, long firstGpa) {
        super(message);
        this.mismatches = mismatches;
        this.firstGpa = firstGpa;
    }

    /** How many checked words differ. */
    public long mismatches() { return mismatches; }

    /** Guest-physical address of the first differing word. */
    public long firstGpa() { return firstGpa; }
}
