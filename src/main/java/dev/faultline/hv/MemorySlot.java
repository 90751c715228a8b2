package dev.faultline.hv;

import dev.faultline.sys.HostMemory;

/**
 * One guest-physical memory slot (kvm_userspace_memory_region2): guest pages
 * [{@code gpa}, {@code gpa + size}) are backed by {@code memory} from {@code memoryOffset},
 * and, for private memory, by {@code guestMemfd} from {@code guestMemfdOffset}. Under
 * {@link MemslotFlags#EXIT_ON_MISSING}, {@code userfault} says which host pages are missing (KVM
 * Userfault's {@code userfault_bitmap}; null otherwise).
 */
public record MemorySlot(int slot, int flags, long gpa, long size, HostMemory memory, long memoryOffset,
                         GuestMemfd guestMemfd, long guestMemfdOffset, UserfaultBitmap userfault) {

    public MemorySlot(int slot, int flags, long gpa, long size, HostMemory memory, long memoryOffset,
                      GuestMemfd guestMemfd, long guestMemfdOffset) {
        this(slot, flags, gpa, size, memory, memoryOffset, guestMemfd, guestMemfdOffset, null);
    }

    public MemorySlot {
        if (size < 0 || ((gpa | size | memoryOffset) & 0xfff) != 0) {
            throw new IllegalArgumentException(String.format(
                    "memslot %d: gpa 0x%x, size 0x%x and host offset 0x%x must be 4 KiB aligned", slot, gpa, size, memoryOffset));
        }
        if (memory != null && memoryOffset + size > memory.size()) {
            throw new IllegalArgumentException(String.format(
                    "memslot %d: [0x%x, +0x%x) of host memory exceeds its 0x%x bytes", slot, memoryOffset, size, memory.size()));
        }
    }

    public static MemorySlot of(int slot, long gpa, HostMemory memory, long memoryOffset, long size, int flags) {
        return new MemorySlot(slot, flags, gpa, size, memory, memoryOffset, null, 0);
    }

    /** This slot under {@link MemslotFlags#EXIT_ON_MISSING} with {@code bitmap} (which must cover exactly the slot). */
    public MemorySlot withUserfault(UserfaultBitmap bitmap) {
        return new MemorySlot(slot, flags | MemslotFlags.EXIT_ON_MISSING, gpa, size, memory, memoryOffset, guestMemfd,
                guestMemfdOffset, bitmap);
    }

    /** This slot with private memory from {@code gmem} at {@code offset} ({@link MemslotFlags#GUEST_MEMFD}). */
    public MemorySlot withGuestMemfd(GuestMemfd gmem, long offset) {
        return new MemorySlot(slot, flags | MemslotFlags.GUEST_MEMFD, gpa, size, memory, memoryOffset, gmem, offset, userfault);
    }

    public long end() { return gpa + size; }

    public boolean contains(long gpa) { return gpa >= this.gpa && gpa - this.gpa < size; }

    /** Host virtual address (userspace_addr) backing guest address {@code gpa} of this slot. */
    public long hva(long gpa) { return memory.address() + memoryOffset + (gpa - this.gpa); }
}
