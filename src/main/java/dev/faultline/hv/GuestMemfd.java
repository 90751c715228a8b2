package dev.faultline.hv;

/**
 * Private guest memory (guest_memfd on kvm, a guest_memfd-like store on ref): not mapped by the VMM
 * unless created with {@link Caps#GUEST_MEMFD_FLAG_MMAP}.
 */
public interface GuestMemfd extends AutoCloseable {
    long size();
    long flags();
    /** The file descriptor on kvm; -1 on ref. */
    int fd();
    @Override void close();
}
