package dev.faultline.hv;

/** One segment register as kvm_segment describes it (x86 descriptor cache). */
public record Segment(long base, int limit, int selector, int type, boolean present, int dpl,
                      boolean db, boolean s, boolean l, boolean g, boolean avl, boolean unusable) {

    /** A flat 64-bit code segment (L=1, D=0), execute/read, accessed. */
    public static Segment code64(int selector) {
        return new Segment(0, 0xffffffff, selector, 0xb, true, 0, false, true, true, true, false, false);
    }

    /** A flat data segment, read/write, accessed. */
    public static Segment data(int selector) {
        return new Segment(0, 0xffffffff, selector, 0x3, true, 0, true, true, false, true, false, false);
    }

    /** A busy 64-bit TSS (needed for VM entry on Intel). */
    public static Segment tss(int selector, long base, int limit) {
        return new Segment(base, limit, selector, 0xb, true, 0, false, false, false, false, false, false);
    }

    public static Segment unusableLdt() {
        return new Segment(0, 0, 0, 0x2, false, 0, false, false, false, false, false, true);
    }
}
