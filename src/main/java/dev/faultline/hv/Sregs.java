package dev.faultline.hv;

/** Special registers as kvm_sregs holds them (the interrupt bitmap is not modelled: always zero). */
public record Sregs(Segment cs, Segment ds, Segment es, Segment fs, Segment gs, Segment ss,
                    Segment tr, Segment ldt, DescriptorTable gdt, DescriptorTable idt,
                    long cr0, long cr2, long cr3, long cr4, long cr8, long efer, long apicBase) {

    public static final long CR0_PE = 1L, CR0_MP = 1L << 1, CR0_ET = 1L << 4, CR0_NE = 1L << 5,
            CR0_WP = 1L << 16, CR0_AM = 1L << 18, CR0_PG = 1L << 31;
    public static final long CR4_PSE = 1L << 4, CR4_PAE = 1L << 5, CR4_PGE = 1L << 7, CR4_OSFXSR = 1L << 9,
            CR4_OSXMMEXCPT = 1L << 10;
    public static final long EFER_SCE = 1L, EFER_LME = 1L << 8, EFER_LMA = 1L << 10, EFER_NXE = 1L << 11;

    public Sregs withCr3(long v) {
        return new Sregs(cs, ds, es, fs, gs, ss, tr, ldt, gdt, idt, cr0, cr2, v, cr4, cr8, efer, apicBase);
    }
}
