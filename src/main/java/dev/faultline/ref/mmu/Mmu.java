package dev.faultline.ref.mmu;

import dev.faultline.hv.Sregs;
import dev.faultline.ref.RefMemslot;
import dev.faultline.ref.RefVcpu;
import dev.faultline.ref.RefVm;
import dev.faultline.ref.x86.CpuState;
import dev.faultline.ref.x86.Op;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The vCPU's MMU: a software TLB in front of a 4-level x86-64 page walker and the memslot lookup.
 *
 * <h2>Fast path</h2>
 * A direct-mapped TLB of {@value #TLB_SIZE} entries keyed by virtual page number maps a 4 KiB
 * virtual page to a host memory segment and the offset of the page in it. Read, write and execute
 * permission have separate tags, so an entry can allow reads only until the first write: a write
 * that misses takes the slow path, which sets the Dirty bit in the guest PTE exactly when hardware
 * would, logs the page dirty, and invalidates decoded code of the page.
 *
 * <h2>Slow path ("the fault path")</h2>
 * {@link #translate} walks the guest page tables (4 KiB, 2 MiB and 1 GiB pages; present, write
 * per CR0.WP, NX per EFER.NXE; Accessed on every entry used and Dirty on the leaf of a write, set
 * with atomic ORs because other vCPUs share the tables), then the gpa goes through
 * {@link RefVm#findSlot}: no slot means MMIO (the vCPU fills an MMIO exit); a slot gives a TLB fill
 * after {@link #checkPage}, the one place where per-page state (decoded code, dirty log and, with
 * the memory-fault mechanisms, missing/private/poisoned pages) decides what the access may do.
 *
 * <p>Flushed on CR3 writes, INVLPG (whole TLB: an INVLPG inside a large page must drop all of its 4 KiB
 * entries), CR0/CR4/EFER changes and memslot changes. Threading: owned by the vCPU's thread.
 */
public final class Mmu {
    public static final int TLB_BITS = 8, TLB_SIZE = 1 << TLB_BITS, TLB_MASK = TLB_SIZE - 1;
    public static final int ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2;

    static final long PTE_P = 1, PTE_RW = 2, PTE_US = 4, PTE_A = 1 << 5, PTE_D = 1 << 6, PTE_PS = 1 << 7;
    static final long PTE_NX = 1L << 63;
    /** Physical address bits of a PTE (MAXPHYADDR 52 as far as the frame mask goes). */
    static final long PHYS_MASK = 0x000f_ffff_ffff_f000L;

    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
    private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

    final long[] rTag = new long[TLB_SIZE], wTag = new long[TLB_SIZE], xTag = new long[TLB_SIZE];
    final MemorySegment[] seg = new MemorySegment[TLB_SIZE];
    final long[] host = new long[TLB_SIZE];
    final long[] gpaOf = new long[TLB_SIZE];
    final RefMemslot[] slotOf = new RefMemslot[TLB_SIZE];
    /**
     * Writable entry of a page that holds decoded code: writes skip the walk but are checked against
     * the page's decoded lines ({@link RefMemslot#codeLines}) before they are done.
     */
    final boolean[] wCode = new boolean[TLB_SIZE];

    private final RefVm vm;
    private final RefVcpu vcpu;
    private final CpuState cpu;

    // Result of the last translate(): leaf permissions, for the TLB fill.
    private boolean leafWritable, leafExecutable, leafDirty;

    /** Set by {@link #hostFor}: the segment holding the returned offset (null for MMIO). */
    public MemorySegment lastSegment;
    /** Set by {@link #translateExec}: the memslot holding the returned gpa. */
    public RefMemslot lastSlot;

    public Mmu(RefVm vm, RefVcpu vcpu, CpuState cpu) {
        this.vm = vm;
        this.vcpu = vcpu;
        this.cpu = cpu;
        flush();
    }

    public void flush() {
        java.util.Arrays.fill(rTag, -1L);
        java.util.Arrays.fill(wTag, -1L);
        java.util.Arrays.fill(xTag, -1L);
        java.util.Arrays.fill(seg, null);
        java.util.Arrays.fill(slotOf, null);
        java.util.Arrays.fill(wCode, false);
    }

    /** Drops every write permission (pages became code pages, or the dirty log was harvested). */
    public void flushWrites() {
        java.util.Arrays.fill(wTag, -1L);
        java.util.Arrays.fill(wCode, false);
    }

    /** Drops write permission of any entry mapping guest page {@code gpaPage}. */
    public void flushWritesTo(long gpaPage) {
        for (int i = 0; i < TLB_SIZE; i++) {
            if (gpaOf[i] == gpaPage && wTag[i] != -1L) {
                wTag[i] = -1L;
                wCode[i] = true;
            }
        }
    }

    // ---------------------------------------------------------------- fast paths

    public long read(long va, int size) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long off = va & 0xfff;
        if (rTag[i] == vpn && off <= 4096 - size) {
            MemorySegment s = seg[i];
            long h = host[i] + off;
            return switch (size) {
                case 1 -> s.get(ValueLayout.JAVA_BYTE, h) & 0xffL;
                case 2 -> s.get(ValueLayout.JAVA_SHORT_UNALIGNED, h) & 0xffffL;
                case 4 -> s.get(ValueLayout.JAVA_INT_UNALIGNED, h) & 0xffffffffL;
                default -> s.get(ValueLayout.JAVA_LONG_UNALIGNED, h);
            };
        }
        return readSlow(va, size);
    }

    public long read64(long va) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long off = va & 0xfff;
        if (rTag[i] == vpn && off <= 4088) return seg[i].get(ValueLayout.JAVA_LONG_UNALIGNED, host[i] + off);
        return readSlow(va, 8);
    }

    public void write(long va, int size, long v) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long off = va & 0xfff;
        if (wTag[i] == vpn && off <= 4096 - size) {
            MemorySegment s = seg[i];
            long h = host[i] + off;
            switch (size) {
                case 1 -> s.set(ValueLayout.JAVA_BYTE, h, (byte) v);
                case 2 -> s.set(ValueLayout.JAVA_SHORT_UNALIGNED, h, (short) v);
                case 4 -> s.set(ValueLayout.JAVA_INT_UNALIGNED, h, (int) v);
                default -> s.set(ValueLayout.JAVA_LONG_UNALIGNED, h, v);
            }
            return;
        }
        writeSlow(va, size, v);
    }

    public void write64(long va, long v) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long off = va & 0xfff;
        if (wTag[i] == vpn && off <= 4088) {
            seg[i].set(ValueLayout.JAVA_LONG_UNALIGNED, host[i] + off, v);
            return;
        }
        writeSlow(va, 8, v);
    }

    // ---------------------------------------------------------------- slow paths

    private long readSlow(long va, int size) {
        long off = va & 0xfff;
        if (off + size > 4096) {
            // Split across two pages: translate both before reading either (the access faults as a whole).
            int first = (int) (4096 - off);
            long gpa1 = translate(va, ACC_READ);
            long gpa2 = translate(va + first, ACC_READ);
            if (vm.findSlot(gpa1) == null || vm.findSlot(gpa2) == null) {
                vcpu.emulationFailure("access crossing a page boundary into MMIO at 0x" + Long.toHexString(va));
            }
            long v = 0;
            for (int k = size - 1; k >= 0; k--) v = (v << 8) | read(va + k, 1);
            return v;
        }
        long gpa = translate(va, ACC_READ);
        RefMemslot slot = vm.findSlot(gpa);
        if (slot == null) return vcpu.mmioRead(gpa, size);
        checkPage(slot, gpa, ACC_READ, size);
        int i = fill(va, gpa, slot);
        MemorySegment s = seg[i];
        long h = host[i] + off;
        return switch (size) {
            case 1 -> s.get(ValueLayout.JAVA_BYTE, h) & 0xffL;
            case 2 -> s.get(ValueLayout.JAVA_SHORT_UNALIGNED, h) & 0xffffL;
            case 4 -> s.get(ValueLayout.JAVA_INT_UNALIGNED, h) & 0xffffffffL;
            default -> s.get(ValueLayout.JAVA_LONG_UNALIGNED, h);
        };
    }

    private void writeSlow(long va, int size, long v) {
        long off = va & 0xfff;
        if (off + size > 4096) {
            int first = (int) (4096 - off);
            long gpa1 = translate(va, ACC_WRITE);
            long gpa2 = translate(va + first, ACC_WRITE);
            if (vm.findSlot(gpa1) == null || vm.findSlot(gpa2) == null) {
                vcpu.emulationFailure("access crossing a page boundary into MMIO at 0x" + Long.toHexString(va));
            }
            for (int k = 0; k < size; k++) write(va + k, 1, v >>> (8 * k));
            return;
        }
        long h = hostFor(va, ACC_WRITE, size);
        MemorySegment s = lastSegment;
        if (s == null) {
            vcpu.mmioWrite(h, size, v);
            return;
        }
        switch (size) {
            case 1 -> s.set(ValueLayout.JAVA_BYTE, h, (byte) v);
            case 2 -> s.set(ValueLayout.JAVA_SHORT_UNALIGNED, h, (short) v);
            case 4 -> s.set(ValueLayout.JAVA_INT_UNALIGNED, h, (int) v);
            default -> s.set(ValueLayout.JAVA_LONG_UNALIGNED, h, v);
        }
    }

    /**
     * Translates {@code va} for an access that stays inside one page and returns the offset of the
     * byte in {@link #lastSegment}; for an address with no memslot, {@link #lastSegment} is null and
     * the gpa is returned instead. Writes are prepared completely (Dirty bit, dirty log, decoded
     * code invalidated) so the caller may then store or compare-and-swap at the offset.
     */
    public long hostFor(long va, int access, int size) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long[] tag = access == ACC_WRITE ? wTag : rTag;
        if (access == ACC_WRITE && wCode[i] && rTag[i] == vpn) {
            // A data write to a page that also holds code: only writes to decoded lines invalidate it.
            vcpu.onWrite(slotOf[i], gpaOf[i] | (va & 0xfff), size);
            if (slotOf[i].codeMark[slotOf[i].pageIndex(gpaOf[i])] == 0) {
                wCode[i] = false;
                wTag[i] = vpn;
            }
            lastSegment = seg[i];
            return host[i] + (va & 0xfff);
        }
        if (tag[i] != vpn) {
            long gpa = translate(va, access);
            RefMemslot slot = vm.findSlot(gpa);
            if (slot == null) {
                lastSegment = null;
                return gpa;
            }
            if (access == ACC_WRITE && slot.readonly) {
                lastSegment = null;  // KVM_MEM_READONLY: a write exits to userspace as an MMIO write
                return gpa;
            }
            checkPage(slot, gpa, access, size);
            i = fill(va, gpa, slot);
            if (access == ACC_WRITE && wTag[i] != vpn) {
                // A page whose writes stay tracked (e.g. dirty-logged before harvesting): write through.
                lastSegment = slot.segment;
                return slot.hostOffset(gpa);
            }
        }
        lastSegment = seg[i];
        return host[i] + (va & 0xfff);
    }

    /**
     * Translates an instruction fetch from {@code va}; sets {@link #lastSlot} (null when the code is
     * outside every memslot, which the caller turns into an emulation failure as KVM does).
     */
    public long translateExec(long va) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        if (xTag[i] == vpn) {
            lastSlot = slotOf[i];
            return gpaOf[i] | (va & 0xfff);
        }
        long gpa = translate(va, ACC_EXEC);
        RefMemslot slot = vm.findSlot(gpa);
        lastSlot = slot;
        if (slot == null) return gpa;
        checkPage(slot, gpa, ACC_EXEC, 1);
        fill(va, gpa, slot);
        return gpa;
    }

    /**
     * The per-page policy of the slow path, consulted before any TLB fill. A write to a page holding
     * decoded code invalidates that code (self-modifying code), and a write to a dirty-logged slot
     * logs the page. The memory-fault mechanisms hook in here: a page that is missing, poisoned, or of
     * the wrong private/shared kind makes the vCPU fill a memory-fault exit instead of returning.
     */
    private void checkPage(RefMemslot slot, long gpa, int access, int size) {
        if (access == ACC_WRITE) {
            vcpu.onWrite(slot, gpa, size);
        }
    }

    /** Installs the TLB entry for the page of {@code va}; returns its index. */
    private int fill(long va, long gpa, RefMemslot slot) {
        long vpn = va >>> 12;
        int i = (int) vpn & TLB_MASK;
        long gpaPage = gpa & ~0xfffL;
        if (rTag[i] != vpn || gpaOf[i] != gpaPage) {
            wTag[i] = -1L;
            xTag[i] = -1L;
            wCode[i] = false;
        }
        rTag[i] = vpn;
        seg[i] = slot.segment;
        host[i] = slot.hostOffset(gpaPage);
        gpaOf[i] = gpaPage;
        slotOf[i] = slot;
        if (leafExecutable) xTag[i] = vpn;
        if (leafWritable && leafDirty && !slot.readonly && !vcpu.isDirtyTracked(slot, gpaPage)) {
            if (slot.codeMark[slot.pageIndex(gpaPage)] != 0) wCode[i] = true;
            else wTag[i] = vpn;
        }
        return i;
    }

    // ---------------------------------------------------------------- page walk

    private static boolean canonical(long va) { return (va << 16 >> 16) == va; }

    /**
     * Walks the guest page tables for {@code va}. Sets the leaf permissions for {@link #fill}.
     * A fault ends the run through the vCPU (no IDT: #PF becomes a triple fault).
     */
    public long translate(long va, int access) {
        if (!canonical(va)) vcpu.raiseException(Op.GP, 0, va);
        if ((cpu.cr0 & Sregs.CR0_PG) == 0) {
            leafWritable = true; leafExecutable = true; leafDirty = true;
            return va;
        }
        boolean nxe = (cpu.efer & Sregs.EFER_NXE) != 0;
        boolean wp = (cpu.cr0 & Sregs.CR0_WP) != 0;
        long table = cpu.cr3 & PHYS_MASK;
        boolean writable = true, nx = false;
        for (int level = 4; level >= 1; level--) {
            int shift = 12 + 9 * (level - 1);
            long pteGpa = table + (((va >>> shift) & 511) << 3);
            RefMemslot slot = vm.findSlot(pteGpa);
            if (slot == null) vcpu.pageTableOutsideMemory(pteGpa, va);
            long off = slot.hostOffset(pteGpa);
            long pte = (long) LONG.getVolatile(slot.segment, off);
            if ((pte & PTE_P) == 0) pageFault(va, access, false);
            if ((pte & PTE_NX) != 0 && !nxe) pageFault(va, access, true);   // reserved bit
            boolean leaf = level == 1 || (level <= 3 && (pte & PTE_PS) != 0);
            if (level == 4 && (pte & PTE_PS) != 0) pageFault(va, access, true);
            writable &= (pte & PTE_RW) != 0;
            nx |= (pte & PTE_NX) != 0 && nxe;
            if (leaf) {
                if (access == ACC_WRITE && !writable && wp) pageFault(va, access, true);
                if (access == ACC_EXEC && nx) pageFault(va, access, true);
                long set = PTE_A | (access == ACC_WRITE ? PTE_D : 0);
                if ((pte & set) != set) {
                    pte = (long) LONG.getAndBitwiseOr(slot.segment, off, set) | set;
                    vcpu.onWrite(slot, pteGpa, 8);  // the walk wrote the page-table page: log it, drop code
                }
                leafWritable = writable || !wp;
                leafExecutable = !nx;
                leafDirty = (pte & PTE_D) != 0;
                long pageMask = (1L << shift) - 1;
                return ((pte & PHYS_MASK) & ~pageMask) | (va & pageMask);
            }
            if ((pte & PTE_A) == 0) {
                LONG.getAndBitwiseOr(slot.segment, off, PTE_A);
                vcpu.onWrite(slot, pteGpa, 8);
            }
            table = pte & PHYS_MASK;
        }
        throw new AssertionError("unreachable: level 1 is always a leaf");
    }

    private void pageFault(long va, int access, boolean present) {
        cpu.cr2 = va;
        int code = (present ? 1 : 0) | (access == ACC_WRITE ? 2 : 0) | (access == ACC_EXEC ? 16 : 0);
        vcpu.raiseException(Op.PF, code, va);
    }

    // ---------------------------------------------------------------- atomics

    /** Atomic load of {@code size} bytes at {@code off} in {@code s} (any alignment inside a page). */
    public static long atomicLoad(MemorySegment s, long off, int size) {
        return switch (size) {
            case 1 -> s.get(ValueLayout.JAVA_BYTE, off) & 0xffL;
            case 2 -> s.get(ValueLayout.JAVA_SHORT_UNALIGNED, off) & 0xffffL;
            case 4 -> (off & 3) == 0 ? (int) INT.getVolatile(s, off) & 0xffffffffL
                    : s.get(ValueLayout.JAVA_INT_UNALIGNED, off) & 0xffffffffL;
            default -> (off & 7) == 0 ? (long) LONG.getVolatile(s, off) : s.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
        };
    }

    /**
     * Compare-and-swap of {@code size} bytes. Bytes and words use the aligned dword around them; a
     * misaligned access that splits an aligned dword/qword ("split lock") is serialised on a global lock,
     * which keeps it atomic against other locked instructions only.
     */
    public static boolean cas(MemorySegment s, long off, int size, long expect, long update) {
        long mask = CpuState.mask(size);
        expect &= mask;
        update &= mask;
        if (size == 8 && (off & 7) == 0) return LONG.compareAndSet(s, off, expect, update);
        if (size == 4 && (off & 3) == 0) return INT.compareAndSet(s, off, (int) expect, (int) update);
        long inner = off & 3;
        if (size < 4 && inner + size <= 4) {
            long aligned = off - inner;
            int shift = (int) (inner * 8);
            int m = (int) (mask << shift);
            for (;;) {
                int cur = (int) INT.getVolatile(s, aligned);
                if (((cur & m) >>> shift) != (int) expect) return false;
                int next = (cur & ~m) | ((int) update << shift);
                if (INT.compareAndSet(s, aligned, cur, next)) return true;
            }
        }
        synchronized (Mmu.class) {
            long cur = atomicLoad(s, off, size) & mask;
            if (cur != expect) return false;
            switch (size) {
                case 2 -> s.set(ValueLayout.JAVA_SHORT_UNALIGNED, off, (short) update);
                case 4 -> s.set(ValueLayout.JAVA_INT_UNALIGNED, off, (int) update);
                default -> s.set(ValueLayout.JAVA_LONG_UNALIGNED, off, update);
            }
            return true;
        }
    }
}
