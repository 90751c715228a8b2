package dev.faultline.paging.uffd;

import dev.faultline.paging.Installer;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.MemorySegment;

/**
 * MINOR mode on memfd-backed RAM: the source writes the pages straight into the page cache through
 * a second mapping of the memfd (not registered, so writing there never faults to us), then
 * UFFDIO_CONTINUE maps those page-cache pages at the guest's address and wakes the faulting threads.
 * The range is registered MISSING|MINOR, so a page absent from the page cache (never written, or
 * punched out by MADV_REMOVE) faults too, and is served the same way: writing through the alias
 * allocates it.
 */
final class ContinueInstaller implements Installer {
    private final Userfaultfd uffd;
    private final Userfaultfd.Caller caller;
    private final HostMemory alias;
    private final long hvaBase;

    ContinueInstaller(Userfaultfd uffd, Userfaultfd.Caller caller, HostMemory alias, long hvaBase) {
        this.uffd = uffd;
        this.caller = caller;
        this.alias = alias;
        this.hvaBase = hvaBase;
    }

    @Override public MemorySegment target() { return alias.segment(); }

    @Override
    public long begin(long gpa, long len) { return gpa; }

    @Override
    public long install(long gpa, long len, boolean zero) {
        return uffd.continueMapping(caller, hvaBase + gpa, len, 0);
    }

    @Override
    public void wake(long gpa, long len) { uffd.wake(caller, hvaBase + gpa, len); }

    @Override public boolean zeroNeedsFill() { return true; }
}
