package dev.faultline.sys;

/**
 * {@code struct kvm_sregs} (x86-64, 312 bytes).
 *
 * <pre>
 *   0 cs   24 ds   48 es   72 fs   96 gs  120 ss  144 tr  168 ldt   (kvm_segment, 24 bytes each)
 * 192 gdt  208 idt                                                  (kvm_dtable, 16 bytes each)
 * 224 cr0  232 cr2  240 cr3  248 cr4  256 cr8  264 efer  272 apic_base   (u64)
 * 280 interrupt_bitmap u64[4]: one bit per vector; KVM_SET_SREGS injects the lowest set one
 * 312
 * </pre>
 */
public final class KvmSregsLayout {
    private KvmSregsLayout() {}

    public static final long CS = 0, DS = 24, ES = 48, FS = 72, GS = 96, SS = 120, TR = 144, LDT = 168;
    public static final long GDT = 192, IDT = 208;
    public static final long CR0 = 224, CR2 = 232, CR3 = 240, CR4 = 248, CR8 = 256, EFER = 264, APIC_BASE = 272;
    public static final long INTERRUPT_BITMAP = 280;
    public static final int INTERRUPT_BITMAP_WORDS = 4;
    public static final long SIZE = 312;
}
