package dev.faultline.paging.uffd;

import dev.faultline.paging.Installer;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.MemorySegment;

/**
 * MISSING mode on anonymous memory: the source fills a staging buffer, UFFDIO_COPY maps a run of
 * pages in one call (allocating and copying in the kernel) and wakes the faulting threads. Zero runs
 * are copied from the core's zero buffer, or mapped with UFFDIO_ZEROPAGE when asked (the shared zero
 * page: cheaper to map, but the guest's first write then takes a copy-on-write fault).
 */
public final class CopyInstaller implements Installer {
    private final Userfaultfd uffd;
    private final Userfaultfd.Caller caller;
    private final MemorySegment staging;
    private final MemorySegment zeros;
    private final long hvaBase;
    private final boolean zeropage;
    private long runGpa;

    public CopyInstaller(Userfaultfd uffd, Userfaultfd.Caller caller, int maxRunPages, MemorySegment zeros, long hvaBase, boolean zeropage) {
        this.uffd = uffd;
        this.caller = caller;
        this.staging = HostMemory.scratch((long) maxRunPages * dev.faultline.paging.FaultCore.PAGE);
        this.zeros = zeros;
        this.hvaBase = hvaBase;
        this.zeropage = zeropage;
    }

    @Override public MemorySegment target() { return staging; }

    @Override
    public long begin(long gpa, long len) {
        runGpa = gpa;
        return 0;
    }

    @Override
    public long install(long gpa, long len, boolean zero) {
        if (zero && zeropage) return uffd.zeropage(caller, hvaBase + gpa, len, 0);
        long src = (zero ? zeros : staging).address() + (gpa - runGpa);
        return uffd.copy(caller, hvaBase + gpa, src, len, 0);
    }

    @Override public boolean installsFromMemory() { return true; }

    @Override
    public long installFrom(long gpa, long len, long srcAddress) {
        return uffd.copy(caller, hvaBase + gpa, srcAddress, len, 0);
    }

    @Override
    public void wake(long gpa, long len) { uffd.wake(caller, hvaBase + gpa, len); }

    @Override public boolean zeroNeedsFill() { return false; }
}
