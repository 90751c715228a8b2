package dev.faultline.guest.workload;

/**
 * The 64-bit word the write workloads store at offset 0 of a page, so that a test can tell after
 * the run which vCPU wrote which page in which round:
 *
 * <pre>
 *  63      56 55      48 47         36 35                     0
 * +----------+----------+-------------+------------------------+
 * |   0xFA   |  vCPU+1  | round % 4096|  gpa of the page       |
 * +----------+----------+-------------+------------------------+
 * </pre>
 *
 * The fields do not overlap (guest RAM is at most 64 GiB = 2^36), so the guest makes a stamp with
 * one add: {@code gpa + vcpuStamp(vcpu) + (round << 36)}.
 */
public final class PageStamp {
    private PageStamp() {}

    public static final long MARK = 0xFAL << 56;
    public static final int ROUND_SHIFT = 36;
    public static final int ROUND_MASK = 0xfff;

    /** The word written to page {@code gpa} by vCPU {@code vcpu} in round {@code round}. */
    public static long of(long gpa, int vcpu, long round) {
        return vcpuStamp(vcpu) | roundStamp(round) | gpa;
    }

    /** The vCPU part: marker and vCPU+1. */
    public static long vcpuStamp(int vcpu) {
        return MARK | ((long) (vcpu + 1) << 48);
    }

    /** The round part. */
    public static long roundStamp(long round) {
        return (round & ROUND_MASK) << ROUND_SHIFT;
    }

    /** Human-readable decoding for messages: "vCPU 1 round 3 gpa 0x401000", or "no stamp". */
    public static String describe(long word) {
        if ((word & 0xff00000000000000L) != MARK) return "no stamp";
        return "vCPU " + (((word >>> 48) & 0xff) - 1) + " round " + ((word >>> ROUND_SHIFT) & ROUND_MASK)
                + " gpa 0x" + Long.toHexString(word & ((1L << ROUND_SHIFT) - 1));
    }
}
