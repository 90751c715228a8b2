package dev.faultline.paging.exit;

import dev.faultline.paging.Installer;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;

/**
 * Exit delivery: the source writes straight into guest RAM, then the hook marks the pages present.
 * Public for lanes that install without a fault (a background prefetch thread on the same RAM).
 */
public final class RamInstaller implements Installer {
    private final HostMemory ram;
    private final PresentHook hook;

    public RamInstaller(HostMemory ram, PresentHook hook) {
        this.ram = ram;
        this.hook = hook;
    }

    @Override public MemorySegment target() { return ram.segment(); }

    @Override
    public long begin(long gpa, long len) { return gpa; }

    @Override
    public long install(long gpa, long len, boolean zero) {
        hook.markPresent(gpa, len);
        return len;
    }

    @Override
    public void wake(long gpa, long len) { hook.markPresent(gpa, len); }

    @Override public boolean zeroNeedsFill() { return true; }
}
