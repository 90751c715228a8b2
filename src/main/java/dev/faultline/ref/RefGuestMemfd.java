package dev.faultline.ref;

import dev.faultline.hv.GuestMemfd;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;

/**
 * The ref backend's guest_memfd: private guest memory kept apart from the VMM's shared mapping (an
 * anonymous host mapping only the backend reads and writes). Private accesses of the guest go here,
 * shared ones to the memslot's userspace memory. A page converted to shared is discarded here
 * (zeroed, as a hole punched in guest_memfd reads back as zeros).
 */
public final class RefGuestMemfd implements GuestMemfd {
    private final HostMemory store;
    private final long flags;

    RefGuestMemfd(long size, long flags) {
        this.store = HostMemory.anonymous(size);
        this.flags = flags;
    }

    @Override public long size() { return store.size(); }
    @Override public long flags() { return flags; }
    @Override public int fd() { return -1; }

    /** The private pages (the backend's view; tests read it to check what the guest stored privately). */
    public MemorySegment segment() { return store.segment(); }

    /** Discards [{@code offset}, {@code offset + len}): it reads back as zeros. */
    void discard(long offset, long len) {
        store.segment().asSlice(offset, len).fill((byte) 0);
    }

    @Override public void close() { store.close(); }
}
