package dev.faultline.pageserver;

import dev.faultline.paging.Installer;
import dev.faultline.sys.Errno;
import java.lang.foreign.MemorySegment;

/**
 * Installs one region's pages into the VMM with UFFDIO_COPY (through {@link dev.faultline.paging.uffd.CopyInstaller},
 * addresses shifted from file offsets to the region's host addresses), and tells apart what a remote
 * VMM can do to its own mapping meanwhile: ENOENT means the range is no longer registered with this
 * userfaultfd (Firecracker before v1.11 remaps a ballooned range with MAP_FIXED), not that the VM is
 * gone. Its waiting threads are woken (they then fault on the new mapping, which the kernel fills
 * with zeros) and the pages count as served: nothing is ever installed there again.
 */
final class RegionInstaller implements Installer {
    private final Installer copy;
    long unmappedPages;

    RegionInstaller(Installer copy) {
        this.copy = copy;
    }

    @Override public MemorySegment target() { return copy.target(); }
    @Override public long begin(long gpa, long len) { return copy.begin(gpa, len); }
    @Override public boolean zeroNeedsFill() { return copy.zeroNeedsFill(); }
    @Override public boolean installsFromMemory() { return copy.installsFromMemory(); }
    @Override public void wake(long gpa, long len) { copy.wake(gpa, len); }

    @Override
    public long install(long gpa, long len, boolean zero) {
        return unmapped(gpa, len, copy.install(gpa, len, zero));
    }

    @Override
    public long installFrom(long gpa, long len, long srcAddress) {
        return unmapped(gpa, len, copy.installFrom(gpa, len, srcAddress));
    }

    private long unmapped(long gpa, long len, long r) {
        if (r != -Errno.ENOENT) return r;
        copy.wake(gpa, len);
        unmappedPages += len / Handshake.PAGE;
        return len;
    }
}
