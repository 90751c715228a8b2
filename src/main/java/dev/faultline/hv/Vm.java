package dev.faultline.hv;

import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A virtual machine: memory slots, private-memory attributes and vCPUs.
 * Thread safety: memslot and attribute changes may come from any thread (serialised inside);
 * each {@link Vcpu} is driven by one thread at a time.
 */
public interface Vm extends AutoCloseable {
    Hypervisor hypervisor();

    int type();

    /** KVM_CHECK_EXTENSION on the VM (answers may differ per VM type). */
    long checkExtension(int cap);

    /** KVM_ENABLE_CAP on the VM; EINVAL as {@link dev.faultline.sys.ErrnoException} for bad caps or args. */
    void enableCap(int cap, long... args);

    /**
     * KVM_SET_USER_MEMORY_REGION2 (or the legacy ioctl where region2 is missing and no guest_memfd is
     * used). A slot of size 0 deletes the slot.
     */
    void setMemorySlot(MemorySlot slot);

    /** The slots currently installed, by increasing gpa. */
    List<MemorySlot> memorySlots();

    /** The slot containing {@code gpa}, or null. */
    default MemorySlot slotAt(long gpa) {
        for (MemorySlot s : memorySlots()) if (s.contains(gpa)) return s;
        return null;
    }

    /** KVM_CREATE_GUEST_MEMFD. */
    GuestMemfd createGuestMemfd(long size, long flags);

    /** KVM_SET_MEMORY_ATTRIBUTES on [gpa, gpa+size). */
    void setMemoryAttributes(long gpa, long size, long attributes);

    /**
     * KVM_GET_DIRTY_LOG for a slot created with {@link MemslotFlags#LOG_DIRTY_PAGES}: fills
     * {@code bitmap} (one bit per page, at least ceil(pages/64) longs) and clears the log.
     */
    void getDirtyLog(int slot, MemorySegment bitmap);

    /**
     * Marks the host page backing {@code gpa} as hardware-poisoned: the next guest access to it fails
     * KVM_RUN with EHWPOISON and a filled memory-fault exit. Its data is lost. The ref backend keeps a
     * per-page mark; kvm puts a userfaultfd poison marker in the host page table
     * ({@code kvm.KvmPoison}), and then even a host read of the page would fail: replace it
     * ({@link #replacePoisoned}) before reading RAM. EOPNOTSUPP where a backend cannot.
     */
    default void injectPoison(long gpa) {
        throw new ErrnoException("inject poison", Errno.EOPNOTSUPP, hypervisor().name() + " vm",
                "this backend cannot mark a host page poisoned");
    }

    /**
     * Forgets the poison mark of the page at {@code gpa}: userspace replaced the host page (on Linux a
     * fresh mapping over it) and has written its contents.
     */
    default void clearPoison(long gpa) {
        throw new ErrnoException("clear poison", Errno.EOPNOTSUPP, hypervisor().name() + " vm",
                "this backend cannot mark a host page poisoned");
    }

    /**
     * Replaces the poisoned page holding {@code gpa} by one holding {@code contents} (4096 bytes) and
     * lifts the poison, such that a vCPU sees either the poison or the new contents, nothing between.
     * This default writes the contents into the slot's host memory, then clears the mark (a backend
     * whose poison is a mark); kvm moves a fresh page over the poisoned one.
     */
    default void replacePoisoned(long gpa, MemorySegment contents) {
        long page = gpa & ~0xfffL;
        MemorySlot s = slotAt(page);
        if (s == null) throw new IllegalArgumentException(String.format("gpa 0x%x is in no memslot", page));
        MemorySegment.copy(contents, 0, MemorySegment.ofAddress(s.hva(page)).reinterpret(4096), 0, 4096);
        clearPoison(page);
    }

    /**
     * Asynchronous page faults (seed 004): a missing page of an {@link MemslotFlags#EXIT_ON_MISSING}
     * slot is brought in by {@code resolver} on a backend worker thread instead of exiting. When it
     * fails, the faulting gfn is remembered and handled synchronously on the retry, so the failure
     * reaches userspace as a memory-fault exit. {@code naive} drops that memory (the design seed 004
     * fixes: the vCPU then retries the access forever); it exists to demonstrate the loop.
     * Only the ref backend implements this (KVM's async PF is an in-kernel mechanism).
     */
    default void enableAsyncPageFaults(BackgroundPageResolver resolver, boolean naive) {
        throw new ErrnoException("enable async page faults", Errno.EOPNOTSUPP, hypervisor().name() + " vm",
                "asynchronous resolution of missing pages through userspace needs the ref backend");
    }

    /** KVM_CREATE_VCPU. */
    Vcpu createVcpu(int id);

    @Override void close();
}
