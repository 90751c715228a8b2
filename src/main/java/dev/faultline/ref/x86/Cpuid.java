package dev.faultline.ref.x86;

/**
 * The CPUID the ref backend advertises (docs/ref-backend.md lists it). It describes exactly what the
 * interpreter implements: long mode, NX, 1 GiB pages, CMOV, POPCNT, LZCNT (ABM), TZCNT (BMI1), LAHF
 * in 64-bit mode; no FPU/SSE/AVX, no CMPXCHG8B/16B, no APIC.
 */
public final class Cpuid {
    private Cpuid() {}

    public static final int MAX_BASIC = 7;
    public static final int MAX_EXTENDED = 0x80000008;
    /** "FaultlineRef" as EBX, EDX, ECX. */
    static final int VENDOR_EBX = le("Faul"), VENDOR_EDX = le("tlin"), VENDOR_ECX = le("eRef");
    private static final String BRAND = "faultline ref x86-64 interpreter";

    public static final int LEAF1_EDX = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 15);     // PSE TSC MSR PAE CMOV
    public static final int LEAF1_ECX = (1 << 23) | (1 << 31);                                  // POPCNT, hypervisor
    public static final int LEAF7_EBX = 1 << 3;                                                 // BMI1 (TZCNT)
    public static final int EXT1_ECX = 1 | (1 << 5);                                            // LAHF_LM, ABM (LZCNT)
    public static final int EXT1_EDX = (1 << 20) | (1 << 26) | (1 << 29);                       // NX, 1 GiB pages, LM

    private static int le(String s) {
        return s.charAt(0) | s.charAt(1) << 8 | s.charAt(2) << 16 | s.charAt(3) << 24;
    }

    /** Fills {@code out} with EAX, EBX, ECX, EDX for {@code leaf}/{@code subleaf} on vCPU {@code apicId}. */
    public static void query(int leaf, int subleaf, int apicId, int[] out) {
        query(leaf, subleaf, apicId, false, out);
    }

    /** Highest extended leaf of a VM with private memory: 0x8000001F describes its encryption bit. */
    public static final int MAX_EXTENDED_PRIVATE = 0x8000001f;

    /**
     * As {@link #query(int, int, int, int[])}; with {@code privateMemory} (a VM_TYPE_SW_PROTECTED VM) leaf
     * 0x8000001F advertises the encryption bit as SEV does: EAX bit 1 (SEV), EBX[5:0] = the C-bit
     * position ({@link dev.faultline.hv.PrivateMemory#ENCRYPTION_BIT}), EBX[11:6] = 0 (no physical
     * address bits lost).
     */
    public static void query(int leaf, int subleaf, int apicId, boolean privateMemory, int[] out) {
        out[0] = out[1] = out[2] = out[3] = 0;
        if (privateMemory) {
            if (leaf == 0x80000000) { out[0] = MAX_EXTENDED_PRIVATE; return; }
            if (leaf == 0x8000001f) { out[0] = 1 << 1; out[1] = dev.faultline.hv.PrivateMemory.ENCRYPTION_BIT; return; }
        }
        switch (leaf) {
            case 0 -> { out[0] = MAX_BASIC; out[1] = VENDOR_EBX; out[2] = VENDOR_ECX; out[3] = VENDOR_EDX; }
            case 1 -> {
                out[0] = 0x000606a0;  // family 6, model 0x6a, stepping 0
                out[1] = (apicId & 0xff) << 24 | 1 << 16;
                out[2] = LEAF1_ECX;
                out[3] = LEAF1_EDX;
            }
            case 7 -> { if (subleaf == 0) out[1] = LEAF7_EBX; }
            case 0x80000000 -> out[0] = MAX_EXTENDED;
            case 0x80000001 -> { out[2] = EXT1_ECX; out[3] = EXT1_EDX; }
            case 0x80000002, 0x80000003, 0x80000004 -> {
                int base = (leaf - 0x80000002) * 16;
                for (int i = 0; i < 4; i++) {
                    int v = 0;
                    for (int k = 0; k < 4; k++) {
                        int idx = base + i * 4 + k;
                        v |= (idx < BRAND.length() ? BRAND.charAt(idx) : 0) << (8 * k);
                    }
                    out[i] = v;
                }
            }
            case 0x80000008 -> out[0] = 46 | 48 << 8;
            default -> { }
        }
    }
}
