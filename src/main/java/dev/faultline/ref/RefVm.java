package dev.faultline.ref;

import dev.faultline.hv.Caps;
import dev.faultline.hv.GuestMemfd;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A ref VM (KVM's {@code struct kvm}): its memslots, its vCPUs and VM-wide generations.
 *
 * <p>Memslots are an immutable array sorted by gpa, replaced as a whole on every change and
 * published through a volatile field, like KVM's RCU-protected {@code kvm_memslots}: vCPUs look a
 * gpa up without a lock. A change bumps {@link #mmuGeneration}, which every vCPU compares at run
 * entry and at its periodic check points and then flushes its software TLB and decoded-code cache
 * (the equivalent of KVM zapping SPTEs and kicking vCPUs).
 *
 * <p>Thread safety: memslot changes are serialised on this object; lookups are lock-free.
 */
public final class RefVm implements Vm {
    /** KVM_USER_MEM_SLOTS on x86 (KVM_MEM_SLOTS_NUM minus the private slots). */
    public static final int MAX_USER_SLOTS = 32764;
    public static final int MAX_VCPUS = 1024;
    private static final int VALID_SLOT_FLAGS = MemslotFlags.LOG_DIRTY_PAGES | MemslotFlags.READONLY;

    private final RefHypervisor hypervisor;
    private final int type;
    private volatile RefMemslot[] slots = new RefMemslot[0];
    /** Bumped on every memslot change and dirty-log harvest: vCPUs flush TLBs when it moves. */
    private volatile int mmuGeneration;
    /** Bumped when a page becomes a code page: vCPUs drop their write TLB entries when it moves. */
    private volatile int codeGeneration;
    private final List<RefVcpu> vcpus = new ArrayList<>();
    private volatile boolean closed;

    RefVm(RefHypervisor hypervisor, int type) {
        this.hypervisor = hypervisor;
        this.type = type;
    }

    @Override public Hypervisor hypervisor() { return hypervisor; }
    @Override public int type() { return type; }

    @Override
    public long checkExtension(int cap) {
        return hypervisor.checkExtension(cap);
    }

    @Override
    public void enableCap(int cap, long... args) {
        throw new ErrnoException("KVM_ENABLE_CAP", Errno.EINVAL, "ref vm", "capability " + cap + " cannot be enabled");
    }

    // ---------------------------------------------------------------- memslots

    @Override
    public synchronized void setMemorySlot(MemorySlot slot) {
        String subject = "ref vm (slot " + slot.slot() + ", gpa 0x" + Long.toHexString(slot.gpa()) + ")";
        if (slot.slot() < 0 || slot.slot() >= MAX_USER_SLOTS) {
            throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, "slot id out of range");
        }
        if ((slot.flags() & ~VALID_SLOT_FLAGS) != 0) {
            throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject,
                    "unsupported flags 0x" + Integer.toHexString(slot.flags()));
        }
        RefMemslot[] old = slots;
        RefMemslot existing = null;
        for (RefMemslot s : old) if (s.id == slot.slot()) existing = s;
        List<RefMemslot> next = new ArrayList<>(Arrays.asList(old));
        if (slot.size() == 0) {
            if (existing == null) return;  // deleting a missing slot is a no-op, as in KVM
            next.remove(existing);
        } else {
            if (slot.memory() == null) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, "no host memory");
            }
            if (existing != null && (existing.desc.size() != slot.size() || existing.desc.memory() != slot.memory()
                    || existing.desc.memoryOffset() != slot.memoryOffset())) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject,
                        "an existing slot may only change its flags or move");
            }
            if (existing != null && ((existing.flags ^ slot.flags()) & MemslotFlags.READONLY) != 0) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, "READONLY cannot change");
            }
            for (RefMemslot s : old) {
                if (s != existing && slot.gpa() < s.end && s.gpa < slot.end()) {
                    throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EEXIST, subject, "overlaps " + s);
                }
            }
            if (existing != null) next.remove(existing);
            next.add(new RefMemslot(slot));
        }
        RefMemslot[] arr = next.toArray(new RefMemslot[0]);
        Arrays.sort(arr, (a, b) -> Long.compareUnsigned(a.gpa, b.gpa));
        slots = arr;
        mmuGeneration++;
    }

    @Override
    public List<MemorySlot> memorySlots() {
        RefMemslot[] s = slots;
        List<MemorySlot> out = new ArrayList<>(s.length);
        for (RefMemslot m : s) out.add(m.desc);
        return out;
    }

    /** The memslot holding {@code gpa}, or null (binary search over the sorted array; lock-free). */
    public RefMemslot findSlot(long gpa) {
        RefMemslot[] s = slots;
        int lo = 0, hi = s.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            RefMemslot m = s[mid];
            if (Long.compareUnsigned(gpa, m.gpa) < 0) hi = mid - 1;
            else if (Long.compareUnsigned(gpa, m.end) >= 0) lo = mid + 1;
            else return m;
        }
        return null;
    }

    int mmuGeneration() { return mmuGeneration; }
    int codeGeneration() { return codeGeneration; }

    /**
     * Marks a page as holding decoded code: later writes to it take the slow path and invalidate it.
     * Other vCPUs drop their write TLB entries when they see the code generation move.
     */
    void markCode(RefMemslot slot, int page) {
        if (slot.codeMark[page] == 0) {
            slot.codeMark[page] = 1;
            codeGeneration++;
        }
    }

    /** A write hit a page with decoded code: bump its version so every vCPU re-decodes it. */
    void invalidateCode(RefMemslot slot, int page) {
        slot.codeMark[page] = 0;
        slot.codeLines[page] = 0;
        slot.codeVersion[page]++;
    }

    void markDirty(RefMemslot slot, int page) {
        long[] bits = slot.dirtyBits;
        if (bits == null) return;
        int w = page >>> 6;
        long bit = 1L << (page & 63);
        if ((bits[w] & bit) == 0) {
            synchronized (bits) { bits[w] |= bit; }
        }
    }

    @Override
    public GuestMemfd createGuestMemfd(long size, long flags) {
        throw new ErrnoException("KVM_CREATE_GUEST_MEMFD", Errno.EINVAL, "ref vm of type " + type,
                "private memory needs a VM type with memory attributes (not yet in the ref backend)");
    }

    @Override
    public void setMemoryAttributes(long gpa, long size, long attributes) {
        throw new ErrnoException("KVM_SET_MEMORY_ATTRIBUTES", Errno.EINVAL, "ref vm of type " + type,
                "memory attributes are not supported by this VM type");
    }

    @Override
    public synchronized void getDirtyLog(int slotId, MemorySegment bitmap) {
        RefMemslot slot = null;
        for (RefMemslot s : slots) if (s.id == slotId) slot = s;
        if (slot == null || slot.dirtyBits == null) {
            throw new ErrnoException("KVM_GET_DIRTY_LOG", Errno.ENOENT, "ref vm (slot " + slotId + ")",
                    slot == null ? "no such slot" : "slot has no LOG_DIRTY_PAGES");
        }
        long[] bits = slot.dirtyBits;
        synchronized (bits) {
            for (int i = 0; i < bits.length; i++) {
                bitmap.set(ValueLayout.JAVA_LONG_UNALIGNED, 8L * i, bits[i]);
                bits[i] = 0;
            }
        }
        mmuGeneration++;  // write-protect again: vCPUs drop write TLB entries and re-log the next write
    }

    // ---------------------------------------------------------------- vCPUs

    @Override
    public synchronized Vcpu createVcpu(int id) {
        if (id < 0 || id >= MAX_VCPUS) throw new ErrnoException("KVM_CREATE_VCPU", Errno.EINVAL, "ref vm", "vcpu id " + id);
        for (RefVcpu v : vcpus) {
            if (v.id() == id) throw new ErrnoException("KVM_CREATE_VCPU", Errno.EEXIST, "ref vm", "vcpu id " + id);
        }
        RefVcpu v = new RefVcpu(this, id);
        vcpus.add(v);
        return v;
    }

    @Override
    public synchronized void close() {
        closed = true;
        vcpus.clear();
        slots = new RefMemslot[0];
    }

    boolean isClosed() { return closed; }
}
