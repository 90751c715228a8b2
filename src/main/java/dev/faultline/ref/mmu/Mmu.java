package dev.faultline.ref.mmu;

import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.sys.Errno;
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
    /** The VM has private memory: bit 51 of an entry is the encryption bit, not an address bit. */
    private final boolean privateCapable;
    private final long physMask;

    // Result of the last translate(): leaf permissions and kind (private: encryption bit set), for the TLB fill.
    private boolean leafWritable, leafExecutable, leafDirty, leafPrivate;
    // Set by checkPage: where the page's bytes are (shared mapping or private store) and the page's offset there.
    private MemorySegment targetSeg;
    private long targetPage;

    /** Set by {@link #hostFor}: the segment holding the returned offset (null for MMIO). */
    public MemorySegment lastSegment;
    /** Set by {@link #translateExec}: the memslot holding the returned gpa. */
    public RefMemslot lastSlot;
    /** Set by {@link #translateExec}: the segment holding the code page's bytes and the page's offset in it. */
    public MemorySegment lastExecSegment;
    public long lastExecHost;

    public Mmu(RefVm vm, RefVcpu vcpu, CpuState cpu) {
        this.vm = vm;
        this.vcpu = vcpu;
        this.cpu = cpu;
        this.privateCapable = vcpu.privateMemory();
        this.physMask = privateCapable ? PHYS_MASK & ~PrivateMemory.ENCRYPTION_MASK : PHYS_MASK;
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
            return load(seg[i], host[i] + off, size);
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
            store(seg[i], host[i] + off, size, v);
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
            probeCrossing(va, first, size, ACC_READ);
            long v = 0;
            for (int k = size - 1; k >= 0; k--) v = (v << 8) | read(va + k, 1);
            return v;
        }
        long gpa = translate(va, ACC_READ);
        RefMemslot slot = vm.findSlot(gpa);
        if (slot == null) {
            if (leafPrivate) privateWithoutMemory(gpa, ACC_READ);
            return vcpu.mmioRead(gpa, size);
        }
        checkPage(slot, gpa, ACC_READ, size);
        int i = fill(va, gpa, slot);
        return load(seg[i], host[i] + off, size);
    }

    private void writeSlow(long va, int size, long v) {
        long off = va & 0xfff;
        if (off + size > 4096) {
            int first = (int) (4096 - off);
            probeCrossing(va, first, size, ACC_WRITE);
            for (int k = 0; k < size; k++) write(va + k, 1, v >>> (8 * k));
            return;
        }
        long h = hostFor(va, ACC_WRITE, size);
        MemorySegment s = lastSegment;
        if (s == null) {
            vcpu.mmioWrite(h, size, v);
            return;
        }
        store(s, h, size, v);
    }

    /** A little-endian load of 1, 2, 4 or 8 bytes at {@code h} of host memory {@code s}, zero-extended. */
    private static long load(MemorySegment s, long h, int size) {
        return switch (size) {
            case 1 -> s.get(ValueLayout.JAVA_BYTE, h) & 0xffL;
            case 2 -> s.get(ValueLayout.JAVA_SHORT_UNALIGNED, h) & 0xffffL;
            case 4 -> s.get(ValueLayout.JAVA_INT_UNALIGNED, h) & 0xffffffffL;
            default -> s.get(ValueLayout.JAVA_LONG_UNALIGNED, h);
        };
    }

    /** The store of {@link #load}'s sizes. */
    private static void store(MemorySegment s, long h, int size, long v) {
        switch (size) {
            case 1 -> s.set(ValueLayout.JAVA_BYTE, h, (byte) v);
            case 2 -> s.set(ValueLayout.JAVA_SHORT_UNALIGNED, h, (short) v);
            case 4 -> s.set(ValueLayout.JAVA_INT_UNALIGNED, h, (int) v);
            default -> s.set(ValueLayout.JAVA_LONG_UNALIGNED, h, v);
        }
    }

    /**
     * Both pages of an access that crosses a page boundary are translated and checked (missing, private,
     * poisoned) before either is touched, so a memory fault on the second page cannot leave the first
     * half of a store done: the re-executed instruction stores exactly once.
     */
    private void probeCrossing(long va, int first, int size, int access) {
        long gpa1 = translate(va, access);
        RefMemslot s1 = vm.findSlot(gpa1);
        if (s1 == null && leafPrivate) privateWithoutMemory(gpa1, access);
        if (s1 != null) checkPage(s1, gpa1, access, first);
        long gpa2 = translate(va + first, access);
        RefMemslot s2 = vm.findSlot(gpa2);
        if (s2 == null && leafPrivate) privateWithoutMemory(gpa2, access);
        if (s2 != null) checkPage(s2, gpa2, access, size - first);
        if (s1 == null || s2 == null) {
            vcpu.emulationFailure("access crossing a page boundary into MMIO at 0x" + Long.toHexString(va));
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
                if (leafPrivate) privateWithoutMemory(gpa, access);
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
                lastSegment = seg[i];
                return host[i] + (va & 0xfff);
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
            lastExecSegment = seg[i];
            lastExecHost = host[i];
            return gpaOf[i] | (va & 0xfff);
        }
        long gpa = translate(va, ACC_EXEC);
        RefMemslot slot = vm.findSlot(gpa);
        lastSlot = slot;
        if (slot == null) {
            if (leafPrivate) privateWithoutMemory(gpa, ACC_EXEC);
            return gpa;
        }
        checkPage(slot, gpa, ACC_EXEC, 1);
        i = fill(va, gpa, slot);
        lastExecSegment = seg[i];
        lastExecHost = host[i];
        return gpa;
    }

    /**
     * The per-page policy of the slow path, consulted before any TLB fill. A write to a page holding
     * decoded code invalidates that code (self-modifying code), and a write to a dirty-logged slot
     * logs the page. The memory-fault mechanisms hook in here: a page that is missing, poisoned, or of
     * the wrong private/shared kind makes the vCPU fill a memory-fault exit instead of returning.
     */
    private void checkPage(RefMemslot slot, long gpa, int access, int size) {
        long page = gpa & ~0xfffL;
        targetSeg = slot.segment;
        targetPage = slot.hostOffset(page);
        if (slot.hasFaultState()) checkFaults(slot, page, accessFlags(access), leafPrivate);
        if (access == ACC_WRITE) {
            vcpu.onWrite(slot, gpa, size);
        }
    }

    private static long accessFlags(int access) {
        return access == ACC_WRITE ? MemoryFaultFlags.WRITE : access == ACC_EXEC ? MemoryFaultFlags.EXEC : MemoryFaultFlags.READ;
    }

    /**
     * The memory-fault checks of one page, in the order KVM's fault path meets them: the access kind
     * against the page's private/shared attribute (implicit conversion), then the host page's presence
     * (exit on missing, or a background fetch under async page faults), then poison. Each failure
     * makes the vCPU fill a memory-fault exit for the whole page and abandon the instruction; on
     * success {@link #targetSeg}/{@link #targetPage} say which store holds the page.
     */
    private void checkFaults(RefMemslot slot, long page, long flags, boolean priv) {
        if (priv) flags |= MemoryFaultFlags.PRIVATE;
        if (slot.privateCapable && (priv != vm.isPrivate(page >>> 12) || (priv && slot.privateSegment == null))) {
            vcpu.memoryFault(flags, page, Errno.EFAULT, MemoryFaultReasons.PRIVATE_MISMATCH);
        }
        UserfaultBitmap missing = slot.userfault;
        if (missing != null && missing.isMissing(page)) vcpu.missingPage(flags, page);
        if (slot.isPoisoned(slot.pageIndex(page))) vcpu.memoryFault(flags, page, Errno.EHWPOISON, MemoryFaultReasons.POISON);
        if (priv) {
            targetSeg = slot.privateSegment;
            targetPage = slot.privateHostOffset(page);
        }
    }

    /** A private access to a gpa with no memslot: upstream reports it as a memory fault, never as MMIO. */
    private void privateWithoutMemory(long gpa, int access) {
        vcpu.memoryFault(accessFlags(access) | MemoryFaultFlags.PRIVATE, gpa & ~0xfffL, Errno.EFAULT, MemoryFaultReasons.PRIVATE_MISMATCH);
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
        seg[i] = targetSeg;
        host[i] = targetPage;
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
            leafWritable = true; leafExecutable = true; leafDirty = true; leafPrivate = false;
            return va;
        }
        boolean nxe = (cpu.efer & Sregs.EFER_NXE) != 0;
        boolean wp = (cpu.cr0 & Sregs.CR0_WP) != 0;
        long table = cpu.cr3 & physMask;
        // The kind of each page-table page comes from the entry (or CR3) that points to it.
        boolean tablePrivate = privateCapable && (cpu.cr3 & PrivateMemory.ENCRYPTION_MASK) != 0;
        boolean writable = true, nx = false;
        for (int level = 4; level >= 1; level--) {
            int shift = 12 + 9 * (level - 1);
            long pteGpa = table + (((va >>> shift) & 511) << 3);
            RefMemslot slot = vm.findSlot(pteGpa);
            if (slot == null) {
                if (tablePrivate) walkerFault(pteGpa, true);
                vcpu.pageTableOutsideMemory(pteGpa, va);
            }
            MemorySegment ts = slot.segment;
            long off = slot.hostOffset(pteGpa);
            if (slot.hasFaultState()) {
                checkTable(slot, pteGpa, tablePrivate);
                ts = targetSeg;
                off = targetPage + (pteGpa & 0xfff);
            }
            long pte = (long) LONG.getVolatile(ts, off);
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
                    pte = (long) LONG.getAndBitwiseOr(ts, off, set) | set;
                    vcpu.onWrite(slot, pteGpa, 8);  // the walk wrote the page-table page: log it, drop code
                }
                leafWritable = writable || !wp;
                leafExecutable = !nx;
                leafDirty = (pte & PTE_D) != 0;
                leafPrivate = privateCapable && (pte & PrivateMemory.ENCRYPTION_MASK) != 0;
                long pageMask = (1L << shift) - 1;
                return ((pte & physMask) & ~pageMask) | (va & pageMask);
            }
            if ((pte & PTE_A) == 0) {
                LONG.getAndBitwiseOr(ts, off, PTE_A);
                vcpu.onWrite(slot, pteGpa, 8);
            }
            tablePrivate = privateCapable && (pte & PrivateMemory.ENCRYPTION_MASK) != 0;
            table = pte & physMask;
        }
        throw new AssertionError("unreachable: level 1 is always a leaf");
    }

    /**
     * A page-table page the walk needs: the same checks as a data page (kind, presence, poison), but a
     * failure names the page-table page's gpa and is reported as a WRITE (seed 003's stage-1 walk case):
     * the x86 walker may have to set Accessed (and, on the leaf, Dirty) bits in it, and it cannot know
     * whether it must before it has the page. Never EXEC, even for an instruction fetch.
     */
    private void checkTable(RefMemslot slot, long pteGpa, boolean tablePrivate) {
        targetSeg = slot.segment;
        targetPage = slot.hostOffset(pteGpa & ~0xfffL);
        checkFaults(slot, pteGpa & ~0xfffL, MemoryFaultFlags.WRITE, tablePrivate);
    }

    private void walkerFault(long pteGpa, boolean tablePrivate) {
        vcpu.memoryFault(MemoryFaultFlags.WRITE | (tablePrivate ? MemoryFaultFlags.PRIVATE : 0), pteGpa & ~0xfffL,
                Errno.EFAULT, MemoryFaultReasons.PRIVATE_MISMATCH);
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
