package dev.faultline.guest;

/**
 * The numbers of faultline's guest boot protocol (docs/boot-protocol.md explains them).
 * Everything the VMM itself places in guest memory lives below {@link #IMAGE_MIN_GPA} (1 MiB).
 *
 * <pre>
 *  gpa 0x000000 +--------------------------+  memslot 0 "low" [0, 1 MiB)
 *      0x001000 | GDT: null, code64 0x08,  |
 *               | data 0x10, TSS 0x18      |
 *      0x002000 | TSS (104 bytes, no IOPB) |
 *      0x010000 | PML4                     |
 *      0x011000 | PDPT                     |
 *      0x012000 | PDs (one per GiB, 2 MiB  |
 *               | pages, up to 64 GiB)     |
 *      0x060000 | vCPU stacks, 16 KiB each |
 *      0x0a0000 | (top of vCPU 0's stack)  |
 *  gpa 0x100000 +--------------------------+  memslot 1 "main" [1 MiB, RAM)
 *               | image (default 0x200000) |
 *               +--------------------------+
 * </pre>
 */
public final class BootProtocol {
    private BootProtocol() {}

    public static final long GDT_GPA = 0x1000;
    public static final long TSS_GPA = 0x2000;
    public static final long PML4_GPA = 0x10000;
    public static final long PDPT_GPA = 0x11000;
    public static final long PD_GPA = 0x12000;
    public static final int MAX_PDS = 64;
    public static final long STACKS_BOTTOM = 0x60000;
    public static final long STACKS_TOP = 0xa0000;
    public static final long STACK_SIZE = 0x4000;
    public static final int MAX_VCPUS = (int) ((STACKS_TOP - STACKS_BOTTOM) / STACK_SIZE);

    /** Images load at or above 1 MiB; everything below belongs to the VMM. */
    public static final long IMAGE_MIN_GPA = 0x100000;
    /** Where compiled C guests are linked and images load unless told otherwise. */
    public static final long DEFAULT_LOAD_GPA = 0x200000;
    /** The identity map covers [0, max(RAM, 4 GiB)), so MMIO addresses above RAM are reachable. */
    public static final long MIN_IDENTITY_MAP = 4L << 30;
    public static final long MAX_RAM = (long) MAX_PDS << 30;

    public static final int SEL_CODE = 0x08, SEL_DATA = 0x10, SEL_TSS = 0x18;

    /** out al: one console byte. */
    public static final int PORT_CONSOLE = 0xe9;
    /** out eax: report one 32-bit value to the host (64-bit values go low dword first). */
    public static final int PORT_REPORT = 0xf0;
    /** out eax: this vCPU is done, with an exit code (0 = success); its run ends. */
    public static final int PORT_DONE = 0xf4;

    /** Memslot numbers of the two RAM slots. */
    public static final int SLOT_LOW = 0, SLOT_MAIN = 1;

    /** RSP of vCPU {@code index} at entry (16-byte aligned, top of its 16 KiB stack). */
    public static long stackTop(int index) {
        if (index < 0 || index >= MAX_VCPUS) {
            throw new IllegalArgumentException("vCPU index " + index + " outside 0.." + (MAX_VCPUS - 1));
        }
        return STACKS_TOP - index * STACK_SIZE;
    }
}
