package dev.faultline.pageserver;

/**
 * One guest memory region as Firecracker describes it to a page-fault handler (its
 * {@code GuestRegionUffdMapping}): where the VMM mapped it ({@code baseHostVirtAddr}, in the VMM's
 * address space), its length, and where its contents start in the memory file ({@code offset}).
 *
 * @param pageSize     the region's page size in bytes as the handshake said it (both {@code page_size}
 *     and the misnamed {@code page_size_kib} hold bytes), or 0 when the handshake had none (before v1.7)
 */
public record GuestRegionMapping(long baseHostVirtAddr, long size, long offset, long pageSize) {
    /** The first host address past the region. */
    public long endHostVirtAddr() { return baseHostVirtAddr + size; }

    /** True when the VMM's address {@code hva} lies in this region. */
    public boolean containsHost(long hva) { return hva - baseHostVirtAddr >= 0 && hva - baseHostVirtAddr < size; }

    /** The memory file offset of the VMM's address {@code hva} (inside the region). */
    public long offsetOf(long hva) { return offset + (hva - baseHostVirtAddr); }

    @Override
    public String toString() {
        return String.format("[0x%x, +0x%x) at file offset 0x%x", baseHostVirtAddr, size, offset);
    }
}
