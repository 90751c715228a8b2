package dev.faultline.guest;

import static dev.faultline.guest.BootProtocol.*;

import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Writes what the boot protocol places below 1 MiB (GDT, TSS, identity page tables) into guest RAM
 * and computes the registers every vCPU starts with. Pure memory writes: the same for every backend.
 *
 * <p>Boot page-table entries are written with Accessed (and, for the 2 MiB leaves, Dirty) already
 * set, so no guest access ever changes them: RAM hashes do not depend on how a CPU sets A/D bits
 * for the VMM's own map.
 */
public final class BootSetup {
    private BootSetup() {}

    static final long PTE_P = 1, PTE_RW = 1 << 1, PTE_A = 1 << 5, PTE_D = 1 << 6, PTE_PS = 1 << 7;
    static final long TABLE_ENTRY = PTE_P | PTE_RW | PTE_A;
    static final long LEAF_2M = PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS;

    public static final long CR0 = Sregs.CR0_PE | Sregs.CR0_MP | Sregs.CR0_ET | Sregs.CR0_NE | Sregs.CR0_WP
            | Sregs.CR0_AM | Sregs.CR0_PG;
    public static final long CR4 = Sregs.CR4_PAE;
    public static final long EFER = Sregs.EFER_LME | Sregs.EFER_LMA | Sregs.EFER_NXE;

    /** Bytes of RAM the identity map covers for a guest of {@code ramSize} bytes. */
    public static long identityMapSize(long ramSize) {
        long gib = 1L << 30;
        return Math.max(MIN_IDENTITY_MAP, (ramSize + gib - 1) / gib * gib);
    }

    /**
     * Writes GDT, TSS and page tables into {@code ram} (guest-physical address 0 at offset 0).
     * @throws IllegalArgumentException when RAM is too small to hold them or too large to map
     */
    public static void writeSystemTables(MemorySegment ram, long ramSize) {
        if (ramSize < IMAGE_MIN_GPA + 0x1000) {
            throw new IllegalArgumentException("guest RAM of " + ramSize + " bytes is too small: the boot protocol needs "
                    + "the first 1 MiB for itself and at least one page above it");
        }
        if (ramSize > MAX_RAM) {
            throw new IllegalArgumentException("guest RAM of " + ramSize + " bytes exceeds the boot protocol's identity-map limit of "
                    + (MAX_RAM >> 30) + " GiB");
        }
        // System area below the stacks is VMM-owned: start from zero.
        ram.asSlice(0, STACKS_BOTTOM).fill((byte) 0);

        // GDT: null, 64-bit code, data, then a 16-byte TSS descriptor.
        put(ram, GDT_GPA, 0L);
        put(ram, GDT_GPA + SEL_CODE, 0x00af9b000000ffffL);  // P, DPL0, S, code exec/read accessed, L=1, G=1
        put(ram, GDT_GPA + SEL_DATA, 0x00cf93000000ffffL);  // P, DPL0, S, data r/w accessed, D/B=1, G=1
        long tssLimit = 103;
        long tssLow = (tssLimit & 0xffff) | ((TSS_GPA & 0xffffff) << 16) | (0x8bL << 40) // P, type 64-bit TSS busy
                | (((tssLimit >> 16) & 0xf) << 48) | (((TSS_GPA >> 24) & 0xff) << 56);
        put(ram, GDT_GPA + SEL_TSS, tssLow);
        put(ram, GDT_GPA + SEL_TSS + 8, TSS_GPA >>> 32);
        // TSS: I/O map base beyond the limit, so there is no I/O permission bitmap.
        ram.set(ValueLayout.JAVA_SHORT_UNALIGNED, TSS_GPA + 102, (short) 104);

        long mapped = identityMapSize(ramSize);
        int pds = (int) (mapped >> 30);
        put(ram, PML4_GPA, PDPT_GPA | TABLE_ENTRY);
        for (int i = 0; i < pds; i++) {
            long pd = PD_GPA + i * 0x1000L;
            put(ram, PDPT_GPA + 8L * i, pd | TABLE_ENTRY);
            for (int j = 0; j < 512; j++) {
                long gpa = ((long) i << 30) | ((long) j << 21);
                put(ram, pd + 8L * j, gpa | LEAF_2M);
            }
        }
    }

    /** The special registers of every vCPU at entry: long mode, CPL 0, paging on with the identity map. */
    public static Sregs sregs(Sregs current) {
        Segment code = Segment.code64(SEL_CODE);
        Segment data = Segment.data(SEL_DATA);
        return new Sregs(code, data, data, data, data, data,
                Segment.tss(SEL_TSS, TSS_GPA, 103), Segment.unusableLdt(),
                new DescriptorTable(GDT_GPA, SEL_TSS + 16 - 1), new DescriptorTable(0, 0),
                CR0, 0, PML4_GPA, CR4, 0, EFER, current == null ? 0xfee00900L : current.apicBase());
    }

    /** The general registers of vCPU {@code index} of {@code count} at entry. */
    public static Regs regs(long entry, int index, int count) {
        Regs r = new Regs();
        r.rip = entry;
        r.rflags = Regs.RFLAGS_FIXED;
        r.gpr[Regs.RSP] = stackTop(index);
        r.gpr[Regs.RDI] = index;
        r.gpr[Regs.RSI] = count;
        return r;
    }

    private static void put(MemorySegment ram, long gpa, long value) {
        ram.set(ValueLayout.JAVA_LONG_UNALIGNED, gpa, value);
    }

    /** Memslot {@link BootProtocol#SLOT_LOW}: guest [0, 1 MiB) of {@code ram}, what the VMM places there. */
    public static MemorySlot lowSlot(HostMemory ram, int flags) {
        return MemorySlot.of(SLOT_LOW, 0, ram, 0, IMAGE_MIN_GPA, flags);
    }

    /** Memslot {@link BootProtocol#SLOT_MAIN}: guest [1 MiB, RAM) of {@code ram}, the image and its data. */
    public static MemorySlot mainSlot(HostMemory ram, int flags) {
        return MemorySlot.of(SLOT_MAIN, IMAGE_MIN_GPA, ram, IMAGE_MIN_GPA, ram.size() - IMAGE_MIN_GPA, flags);
    }

    /** Puts {@code vcpu} (number {@code index} of {@code count}) in the boot protocol's entry state at {@code entry}. */
    public static void boot(Vcpu vcpu, long entry, int index, int count) {
        vcpu.setSregs(sregs(vcpu.getSregs()));
        vcpu.setRegs(regs(entry, index, count));
    }
}
