package dev.faultline.kvm;

import dev.faultline.hv.GuestMemfd;
import dev.faultline.sys.Libc;

/** A guest_memfd from KVM_CREATE_GUEST_MEMFD. Closing it while a memslot uses it is the caller's mistake. */
final class KvmGuestMemfd implements GuestMemfd {
    private final int fd;
    private final long size, flags;
    private boolean closed;

    KvmGuestMemfd(int fd, long size, long flags) {
        this.fd = fd;
        this.size = size;
        this.flags = flags;
    }

    @Override public long size() { return size; }
    @Override public long flags() { return flags; }
    @Override public int fd() { return fd; }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "guest_memfd " + fd + " (" + size + " bytes, flags 0x" + Long.toHexString(flags) + ")";
    }
}
