package dev.faultline.pageserver;

/**
 * The ways Firecracker releases have spoken the page-fault handler protocol (the facts and their
 * sources: shared/design/firecracker-uffd-protocol.md; docs/pageserver.md). What differs: which fields
 * each region's JSON object has, whether the socket stays open after the one message, whether
 * EVENT_REMOVE is always requested, and how a balloon gives pages back.
 */
public enum FirecrackerVersion {
    /** v1.1 to v1.6: {@code base_host_virt_addr, size, offset}; socket closed; balloon remaps the range (no REMOVE reaches the handler). */
    V1_1("v1.1-v1.6", false, false, false, Balloon.REMAP),
    /** v1.7 to v1.10: adds {@code page_size_kib} (in bytes); socket closed; balloon remaps the range. */
    V1_7("v1.7-v1.10", false, true, false, Balloon.REMAP),
    /** v1.11: the same handshake; the balloon madvises the registered range, so REMOVE events arrive. */
    V1_11("v1.11", false, true, false, Balloon.MADVISE),
    /** v1.12 to main: {@code page_size} and {@code page_size_kib} (both bytes); the socket is kept open; EVENT_REMOVE always. */
    V1_12("v1.12-main", true, true, true, Balloon.MADVISE),
    /**
     * The unreleased {@code feature/secret-hiding} branch for a VM without guest_memfd: as main, plus
     * {@code gpa_start} and {@code is_guest_memfd: false} in each object (with guest_memfd it sends three
     * descriptors and more messages, which this handler refuses: docs/pageserver.md).
     */
    SECRET_HIDING("secret-hiding branch, no guest_memfd", true, true, true, Balloon.MADVISE);

    /** How the VMM's balloon (or free-page reporting) drops a range of guest memory restored through a handler. */
    public enum Balloon {
        /** mmap(MAP_FIXED | MAP_ANONYMOUS) over the range, then madvise(MADV_DONTNEED): the registration is dropped, the handler hears nothing. */
        REMAP,
        /** madvise(MADV_DONTNEED) on the registered range: a UFFD_EVENT_REMOVE first, which the madvise waits on. */
        MADVISE
    }

    private final String label;
    private final boolean pageSize, pageSizeKib, socketKeptOpen;
    private final Balloon balloon;

    FirecrackerVersion(String label, boolean pageSize, boolean pageSizeKib, boolean socketKeptOpen, Balloon balloon) {
        this.label = label;
        this.pageSize = pageSize;
        this.pageSizeKib = pageSizeKib;
        this.socketKeptOpen = socketKeptOpen;
        this.balloon = balloon;
    }

    public String label() { return label; }
    /** The JSON objects have {@code page_size}. */
    public boolean sendsPageSize() { return pageSize; }
    /** The JSON objects have {@code page_size_kib} (which holds bytes). */
    public boolean sendsPageSizeKib() { return pageSizeKib; }
    /** The VMM keeps the socket open after the handshake (never writing to it again), so its hang-up means the VMM is gone. */
    public boolean keepsSocketOpen() { return socketKeptOpen; }
    public Balloon balloon() { return balloon; }

    /** The version range whose handshake has these fields. */
    static FirecrackerVersion ofFields(boolean pageSize, boolean pageSizeKib) {
        if (pageSize) return V1_12;
        return pageSizeKib ? V1_7 : V1_1;
    }
}
