package dev.faultline.paging.exit;

import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageStates;
import dev.faultline.paging.Prefetch;
import dev.faultline.sys.HostMemory;
import dev.faultline.vmm.MemoryFaultHandler;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Demand paging of the main memslot on the ref backend through exit on missing: before the vCPUs
 * start, the slot holding the fault core's range gets a {@link UserfaultBitmap} under
 * {@code EXIT_ON_MISSING} in which every page the core does not hold PRESENT is missing; each vCPU
 * then serves its own memory-fault exits through the core ({@link ExitFaultHandler}, one lane per
 * vCPU, the page written into RAM and then its bit cleared) and re-enters. Pages that arrive without
 * a fault (a migration's push) go through {@link FaultCore#offer} on lanes from {@link #addLanes},
 * which clear the same bits, so every page is installed exactly once whoever gets it first.
 *
 * <p>The same piece serves any {@link dev.faultline.paging.PageSource}: a snapshot (lazy restore), a
 * migration source (post-copy), or the VMM's clean copies ({@code run --exit-on-missing}).
 *
 * <p>A source failure is the failing vCPU's stop reason (the machine then stops the others) and is
 * kept as {@link #failureMessage()}; the page stays missing and nothing of it is made up.
 */
public final class ExitPager implements DemandPager, MemoryFaultHandler {
    public static final String INSTALLED = "installed the page through the paging core";

    private final FaultCore core;
    private final int extraLanes;
    private final AtomicReference<String> failure = new AtomicReference<>();
    private volatile Attached attached;

    private record Attached(UserfaultBitmap bitmap, HostMemory ram, PresentHook hook, ExitFaultHandler handler) {}

    public ExitPager(FaultCore core) {
        this(core, 0);
    }

    /** @param extraLanes fault lanes beyond one per vCPU, used with indexes from the vCPU count up (e.g. a background resolver) */
    public ExitPager(FaultCore core, int extraLanes) {
        this.core = core;
        this.extraLanes = extraLanes;
    }

    /**
     * Readahead as exit delivery can do it: the vCPU that faulted installs the whole window itself
     * (no handler thread runs ahead of it in the background, so {@code aheadPages} would never be used).
     */
    public static Prefetch onFaultingThread(Prefetch p) {
        return p instanceof Prefetch.Readahead r && r.aheadPages() > 0 ? new Prefetch.Readahead(r.initialPages(), r.maxPages(), 0) : p;
    }

    @Override public FaultCore core() { return core; }
    @Override public MemoryFaultHandler faultHandler() { return this; }
    @Override public String failureMessage() { return failure.get(); }

    /** The main slot's userfault bitmap (null before {@link #prepare} or {@link #attach}). */
    public UserfaultBitmap bitmap() {
        Attached a = attached;
        return a == null ? null : a.bitmap;
    }

    /**
     * Builds the bitmap for {@code slot} (pages outside the core's range, and pages the core holds
     * PRESENT, are present; every other page is missing) and the fault handler with {@code lanes}
     * lanes, and returns {@code slot} under EXIT_ON_MISSING with that bitmap. The caller installs the
     * slot ({@link #prepare} does it for the plain case). Guest RAM must not be read by the guest
     * before then.
     */
    public MemorySlot attach(MemorySlot slot, HostMemory ram, int lanes) {
        if (core.baseGpa() < slot.gpa() || core.endGpa() > slot.end()) {
            throw new IllegalArgumentException(String.format("paged range [0x%x, 0x%x) must lie in memslot %d [0x%x, 0x%x)",
                    core.baseGpa(), core.endGpa(), slot.slot(), slot.gpa(), slot.end()));
        }
        UserfaultBitmap bitmap = UserfaultBitmap.allMissing(slot.gpa(), slot.size());
        bitmap.markPresent(slot.gpa(), core.baseGpa() - slot.gpa());
        bitmap.markPresent(core.endGpa(), slot.end() - core.endGpa());
        PageStates st = core.states();
        for (long p = 0; p < st.pages(); p++) if (st.isPresent(p)) bitmap.markPresent(core.gpaOf(p), FaultCore.PAGE);
        PresentHook hook = bitmap::markPresent;
        attached = new Attached(bitmap, ram, hook, new ExitFaultHandler(core, ram, lanes, hook));
        return slot.withUserfault(bitmap);
    }

    @Override
    public Session prepare(Context c) {
        MemorySlot main = c.vm().slotAt(core.baseGpa());
        if (main == null) throw new IllegalArgumentException(String.format("no memslot holds the paged range at 0x%x", core.baseGpa()));
        c.vm().setMemorySlot(attach(main, c.ram().memory(), c.vcpus() + extraLanes));
        failure.set(null);
        return () -> {};
    }

    @Override
    public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
        Attached a = attached;
        if (a == null) return "demand paging was not prepared for this machine";
        String why = a.handler.resolve(vcpuIndex, fault);
        if (why != null) failure.compareAndSet(null, why);
        return why;
    }

    @Override
    public String lastResolution(int vcpuIndex) { return INSTALLED; }

    /** One lane over the whole paged range: pages are written straight into RAM, so any run fits. */
    @Override
    public synchronized List<FaultCore.Lane> addLanes(String name, int maxRunPages) {
        Attached a = attached;
        if (a == null) throw new IllegalStateException("lanes can be added only while the machine runs");
        return List.of(core.newLane(name, core.baseGpa(), core.endGpa(), new RamInstaller(a.ram, a.hook)));
    }
}
