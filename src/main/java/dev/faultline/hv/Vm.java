package dev.faultline.hv;

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

    /** KVM_CREATE_VCPU. */
    Vcpu createVcpu(int id);

    @Override void close();
}
