package dev.faultline.ref;

import dev.faultline.hv.BackgroundPageResolver;
import dev.faultline.hv.Caps;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.PrivateMemory;
import dev.faultline.hv.UserfaultBitmap;
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
import java.util.concurrent.locks.LockSupport;

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
    private static final int VALID_SLOT_FLAGS = MemslotFlags.LOG_DIRTY_PAGES | MemslotFlags.READONLY
            | MemslotFlags.EXIT_ON_MISSING | MemslotFlags.GUEST_MEMFD;

    private final RefHypervisor hypervisor;
    private final int type;
    private volatile RefMemslot[] slots = new RefMemslot[0];
    /** Bumped on every memslot change and dirty-log harvest: vCPUs flush TLBs when it moves. */
    private volatile int mmuGeneration;
    /** Bumped when a page becomes a code page: vCPUs drop their write TLB entries when it moves. */
    private volatile int codeGeneration;
    private final List<RefVcpu> vcpus = new ArrayList<>();
    private volatile RefVcpu[] vcpuArray = new RefVcpu[0];
    private volatile boolean closed;
    /** Whether this VM type has private memory (memory attributes, guest_memfd slots, the encryption bit). */
    final boolean privateCapable;
    private final MemoryAttributes attributes = new MemoryAttributes();
    /** Reasons for which memory-fault exits are filled (seed 000's opt-in); all until the capability is enabled. */
    private volatile long memoryFaultReasons = MemoryFaultReasons.VALID;
    /** KVM_CAP_EXIT_HYPERCALL: hypercalls that exit to userspace (bit = hypercall number). */
    private volatile long hypercallExits;
    private volatile BackgroundPageResolver asyncResolver;
    private volatile boolean asyncNaive;
    private Thread asyncWorker;

    RefVm(RefHypervisor hypervisor, int type) {
        this.hypervisor = hypervisor;
        this.type = type;
        this.privateCapable = type == Caps.VM_TYPE_SW_PROTECTED;
    }

    @Override public Hypervisor hypervisor() { return hypervisor; }
    @Override public int type() { return type; }

    /** KVM_CHECK_EXTENSION on this VM: memory attributes depend on the VM type, as in KVM. */
    @Override
    public long checkExtension(int cap) {
        if (cap == Caps.MEMORY_ATTRIBUTES) return privateCapable ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0;
        return hypervisor.checkExtension(cap);
    }

    @Override
    public void enableCap(int cap, long... args) {
        long a0 = args.length > 0 ? args[0] : 0;
        switch (cap) {
            case Caps.FAULTLINE_MEMORY_FAULT_EXIT -> {
                MemoryFaultReasons.check(a0, "ref vm");
                memoryFaultReasons = a0;
            }
            case Caps.EXIT_HYPERCALL -> {
                if ((a0 & ~PrivateMemory.EXIT_HYPERCALL_MAP_GPA_RANGE) != 0) {
                    throw new ErrnoException("KVM_ENABLE_CAP", Errno.EINVAL, "ref vm",
                            String.format("KVM_CAP_EXIT_HYPERCALL mask 0x%x has hypercalls that cannot exit (valid: 0x%x)",
                                    a0, PrivateMemory.EXIT_HYPERCALL_MAP_GPA_RANGE));
                }
                hypercallExits = a0;
            }
            case Caps.MEMORY_FAULT_INFO -> throw new ErrnoException("KVM_ENABLE_CAP", Errno.EINVAL, "ref vm",
                    "KVM_CAP_MEMORY_FAULT_INFO is informational and cannot be enabled");
            default -> throw new ErrnoException("KVM_ENABLE_CAP", Errno.EINVAL, "ref vm", "capability " + cap + " cannot be enabled");
        }
    }

    /** Whether memory-fault exits are filled for {@code reason} ({@link MemoryFaultReasons}). */
    boolean memoryFaultReasonEnabled(long reason) { return (memoryFaultReasons & reason) != 0; }

    long memoryFaultReasons() { return memoryFaultReasons; }

    boolean hypercallExits(long nr) { return nr >= 0 && nr < 64 && (hypercallExits & (1L << nr)) != 0; }

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
        checkFaultFlags(slot, subject);
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
            if (existing != null && (((existing.flags ^ slot.flags()) & MemslotFlags.GUEST_MEMFD) != 0
                    || existing.desc.guestMemfd() != slot.guestMemfd() || existing.desc.guestMemfdOffset() != slot.guestMemfdOffset())) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject,
                        "guest_memfd binding cannot change (delete and re-create the slot)");
            }
            for (RefMemslot s : old) {
                if (s != existing && slot.gpa() < s.end && s.gpa < slot.end()) {
                    throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EEXIST, subject, "overlaps " + s);
                }
            }
            if (existing != null) next.remove(existing);
            next.add(new RefMemslot(slot, privateCapable, existing));
        }
        RefMemslot[] arr = next.toArray(new RefMemslot[0]);
        Arrays.sort(arr, (a, b) -> Long.compareUnsigned(a.gpa, b.gpa));
        slots = arr;
        flushRemoteTlbs();
    }

    private void checkFaultFlags(MemorySlot slot, String subject) {
        if (slot.size() == 0) return;
        if ((slot.flags() & MemslotFlags.EXIT_ON_MISSING) != 0) {
            UserfaultBitmap b = slot.userfault();
            if (b == null || b.gpa() != slot.gpa() || b.size() != slot.size()) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject,
                        b == null ? "EXIT_ON_MISSING needs a userfault bitmap" : "the userfault bitmap must cover exactly the slot (" + b + ")");
            }
        }
        if ((slot.flags() & MemslotFlags.GUEST_MEMFD) != 0) {
            if (!privateCapable) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject,
                        "KVM_MEM_GUEST_MEMFD needs a VM type with private memory (VM_TYPE_SW_PROTECTED)");
            }
            if (!(slot.guestMemfd() instanceof RefGuestMemfd g)) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, "KVM_MEM_GUEST_MEMFD set without a ref guest_memfd");
            }
            long off = slot.guestMemfdOffset();
            if ((off & 0xfff) != 0 || off < 0 || off + slot.size() > g.size() || off + slot.size() < off) {
                throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, String.format(
                        "guest_memfd range [0x%x, +0x%x) is unaligned or outside its 0x%x bytes", off, slot.size(), g.size()));
            }
        } else if (slot.guestMemfd() != null) {
            throw new ErrnoException("KVM_SET_USER_MEMORY_REGION2", Errno.EINVAL, subject, "a guest_memfd given without KVM_MEM_GUEST_MEMFD");
        }
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
        String subject = "ref vm of type " + type;
        if (!privateCapable) {
            throw new ErrnoException("KVM_CREATE_GUEST_MEMFD", Errno.EINVAL, subject,
                    "private memory needs a VM type with memory attributes (VM_TYPE_SW_PROTECTED)");
        }
        if (flags != 0) {
            throw new ErrnoException("KVM_CREATE_GUEST_MEMFD", Errno.EINVAL, subject,
                    "flags 0x" + Long.toHexString(flags) + " (the ref guest_memfd is never mapped by userspace)");
        }
        if (size <= 0 || (size & 0xfff) != 0) {
            throw new ErrnoException("KVM_CREATE_GUEST_MEMFD", Errno.EINVAL, subject, "size 0x" + Long.toHexString(size) + " is not a positive multiple of 4 KiB");
        }
        return new RefGuestMemfd(size, flags);
    }

    /**
     * KVM_SET_MEMORY_ATTRIBUTES with upstream's checks (kvm_vm_ioctl_set_mem_attributes): unknown
     * attribute bits, a size of 0, an unaligned address or size, or a range that wraps are EINVAL.
     * Attributes belong to gfns, not memslots, so a range outside every slot is accepted.
     * Converting discards the side left behind in the backend's private store: a page that becomes
     * shared reads zeros from guest_memfd if it is ever made private again (the VMM discards the
     * shared side of pages made private). Cached translations are dropped on every vCPU.
     */
    @Override
    public synchronized void setMemoryAttributes(long gpa, long size, long attrs) {
        String subject = String.format("ref vm of type %d, [0x%x, +0x%x) attributes 0x%x", type, gpa, size, attrs);
        long supported = privateCapable ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0;
        if ((attrs & ~supported) != 0) {
            throw new ErrnoException("KVM_SET_MEMORY_ATTRIBUTES", Errno.EINVAL, subject,
                    supported == 0 ? "this VM type has no memory attributes" : "unknown attribute bits 0x" + Long.toHexString(attrs & ~supported));
        }
        if (size == 0 || ((gpa | size) & 0xfff) != 0 || Long.compareUnsigned(gpa + size, gpa) <= 0) {
            throw new ErrnoException("KVM_SET_MEMORY_ATTRIBUTES", Errno.EINVAL, subject, "range must be non-empty, page-aligned and not wrap");
        }
        boolean toPrivate = attrs != 0;
        for (long g = gpa; g - gpa < size; g += 4096) {
            boolean was = attributes.isPrivate(g >>> 12);
            if (was == toPrivate) continue;
            attributes.set(g >>> 12, toPrivate);
            if (!toPrivate) {
                RefMemslot s = findSlot(g);
                if (s != null && s.privateSegment != null) {
                    ((RefGuestMemfd) s.desc.guestMemfd()).discard(s.privateHostOffset(g), 4096);
                }
            }
        }
        flushRemoteTlbs();
    }

    /** Whether gfn {@code gfn} has the PRIVATE attribute (lock-free read). */
    public boolean isPrivate(long gfn) { return privateCapable && attributes.isPrivate(gfn); }

    // ---------------------------------------------------------------- poison

    @Override
    public synchronized void injectPoison(long gpa) {
        RefMemslot s = poisonSlot(gpa, "inject poison");
        if (s.setPoison(s.pageIndex(gpa), true)) flushRemoteTlbs();
    }

    @Override
    public synchronized void clearPoison(long gpa) {
        RefMemslot s = poisonSlot(gpa, "clear poison");
        s.setPoison(s.pageIndex(gpa), false);
    }

    private RefMemslot poisonSlot(long gpa, String call) {
        RefMemslot s = findSlot(gpa);
        if (s == null) {
            throw new ErrnoException(call, Errno.EINVAL, "ref vm", String.format("gpa 0x%x is in no memslot", gpa));
        }
        return s;
    }

    // ---------------------------------------------------------------- asynchronous page faults (seed 004)

    @Override
    public synchronized void enableAsyncPageFaults(BackgroundPageResolver resolver, boolean naive) {
        if (resolver == null) throw new IllegalArgumentException("a background page resolver is needed");
        asyncNaive = naive;
        asyncResolver = resolver;
        if (asyncWorker == null) {
            asyncWorker = Thread.ofPlatform().daemon().name("ref-async-pf").start(this::asyncLoop);
        }
    }

    boolean asyncEnabled() { return asyncResolver != null; }
    boolean asyncNaive() { return asyncNaive; }

    /** Hands vCPU {@code v}'s pending request to the worker (the vCPU set it up and waits for its state to change). */
    void submitAsync() { LockSupport.unpark(asyncWorker); }

    private void asyncLoop() {
        while (!closed) {
            boolean found = false;
            for (RefVcpu v : vcpuArray) {
                if (v.asyncState != RefVcpu.ASYNC_PENDING) continue;
                found = true;
                boolean ok;
                try {
                    ok = asyncResolver.resolve(v.asyncGpa);
                } catch (RuntimeException e) {
                    ok = false;
                }
                v.asyncState = ok ? RefVcpu.ASYNC_DONE : RefVcpu.ASYNC_FAILED;
                Thread t = v.asyncWaiter;
                if (t != null) LockSupport.unpark(t);
            }
            if (!found) LockSupport.park(this);
        }
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
        // Write-protect again before returning, as KVM does: every vCPU drops its writable translations,
        // so a write after this call is logged in the next harvest, never lost between two.
        flushRemoteTlbs();
    }

    /**
     * KVM's remote TLB flush: bumps the MMU generation and returns only when no vCPU can still use a
     * translation made before it. A vCPU outside the guest catches up on entry; one inside acknowledges
     * at its next page boundary. (The vCPU writes {@code inGuest} then reads the generation; this writes
     * the generation then reads {@code inGuest}: with volatiles, at least one side sees the other.)
     */
    synchronized void flushRemoteTlbs() {
        int g = ++mmuGeneration;
        Thread me = Thread.currentThread();
        for (RefVcpu v : vcpuArray) {
            if (v.runningThread() == me) continue;
            while (v.inGuest() && v.ackedMmuGeneration() - g < 0) Thread.onSpinWait();
        }
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
        vcpuArray = vcpus.toArray(new RefVcpu[0]);
        return v;
    }

    @Override
    public synchronized void close() {
        closed = true;
        if (asyncWorker != null) LockSupport.unpark(asyncWorker);
        vcpus.clear();
        vcpuArray = new RefVcpu[0];
        slots = new RefMemslot[0];
    }

    boolean isClosed() { return closed; }
}
