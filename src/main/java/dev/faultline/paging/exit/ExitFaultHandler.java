package dev.faultline.paging.exit;

import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.Installer;
import dev.faultline.paging.PageSourceException;
import dev.faultline.paging.PageStates;
import dev.faultline.sys.HostMemory;
import dev.faultline.vmm.MemoryFaultHandler;
import java.util.concurrent.locks.LockSupport;
import java.util.function.IntFunction;

/**
 * Exit-based delivery (the seeds' design): a vCPU whose access hit a missing page gets a memory-fault
 * exit and serves the fault itself, on its own thread, through the shared {@link FaultCore}, then
 * re-enters. No wait queue and no cross-thread wake-up, except when two vCPUs fault on the same page
 * at once: the loser waits (spinning briefly, then parking in short naps) until the winner has
 * marked it present.
 *
 * <p>One lane per vCPU, so latencies are per vCPU by construction and nothing is shared but the
 * page-state array. How a lane makes its pages visible is its {@link Installer}'s business: on ref
 * it writes RAM and clears the pages' bits in the userfault bitmap ({@link RamInstaller}); on kvm it
 * is UFFDIO_COPY on a userfaultfd that fails KVM's own faults ({@code uffd.UffdPager}, exit delivery).
 */
public final class ExitFaultHandler implements MemoryFaultHandler {
    private static final int SPINS = 2_000;
    private static final long NAP_NANOS = 20_000;

    private final FaultCore core;
    private final FaultCore.Lane[] lanes;

    /** Lanes that write guest RAM, then mark the pages present through {@code hook} (the ref backend). */
    public ExitFaultHandler(FaultCore core, HostMemory ram, int vcpus, PresentHook hook) {
        this(core, vcpus, vcpu -> new RamInstaller(ram, hook));
    }

    /** Lane {@code i} ("vcpu-i", over the whole paged range) installs vCPU {@code i}'s pages with {@code installers.apply(i)}. */
    public ExitFaultHandler(FaultCore core, int vcpus, IntFunction<Installer> installers) {
        this.core = core;
        this.lanes = new FaultCore.Lane[vcpus];
        for (int i = 0; i < vcpus; i++) lanes[i] = core.newLane("vcpu-" + i, core.baseGpa(), core.endGpa(), installers.apply(i));
    }

    public FaultCore core() { return core; }

    @Override
    public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
        String refused = FaultRange.refusal(core, lanes.length, vcpuIndex, fault.gpa());
        if (refused != null) return refused;
        try {
            return serve(lanes[vcpuIndex], vcpuIndex, fault.gpa() & -FaultCore.PAGE);
        } catch (PageSourceException e) {
            return e.getMessage();
        }
    }

    private String serve(FaultCore.Lane lane, int vcpu, long gpa) {
        while (true) {
            int r = core.serveFault(lane, vcpu, gpa);
            if (r > 0) return null;
            if (r == 0) return null; // present already; the core marked it again through the hook
            if (r == FaultCore.WAIT) {
                awaitPresent(core.pageOf(gpa));
                return null;
            }
            if (r == FaultCore.GONE) return "the page could not be installed (address space going away)";
            // RETRY (userfaultfd: EAGAIN while a REMOVE event waits to be read by the handler thread): again.
            Thread.onSpinWait();
        }
    }

    private void awaitPresent(long page) {
        PageStates states = core.states();
        for (int i = 0; i < SPINS; i++) {
            if (states.get(page) != PageStates.FETCHING) return;
            Thread.onSpinWait();
        }
        while (states.get(page) == PageStates.FETCHING) LockSupport.parkNanos(NAP_NANOS);
    }
}
