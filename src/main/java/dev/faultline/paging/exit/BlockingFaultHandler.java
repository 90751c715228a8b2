package dev.faultline.paging.exit;

import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSourceException;
import dev.faultline.sys.HostMemory;
import dev.faultline.vmm.MemoryFaultHandler;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;

/**
 * Blocking delivery, for comparison with {@link ExitFaultHandler} on the same backend: it works like
 * userfaultfd. The faulting vCPU posts its fault to a handler thread, wakes it, and sleeps until the
 * handler has installed the page and woken it back: two cross-thread wake-ups per fault, exactly
 * the cost the exit-based design removes.
 *
 * <p>Requests travel through one slot per vCPU (no queue, no lock, no allocation): slot value 0 is
 * empty, gpa + 1 is a request, and the handler answers by writing the slot's result.
 */
public final class BlockingFaultHandler implements MemoryFaultHandler, AutoCloseable {
    private static final long EMPTY = 0;

    private final FaultCore core;
    private final FaultCore.Lane lane;
    private final AtomicLongArray requests;
    private final AtomicReferenceArray<String> results;
    private final AtomicLongArray done;
    private final AtomicReferenceArray<Thread> waiters;
    private final Thread handler;
    private volatile boolean stopping;

    public BlockingFaultHandler(FaultCore core, HostMemory ram, int vcpus, PresentHook hook) {
        this.core = core;
        this.lane = core.newLane("blocking-handler", core.baseGpa(), core.endGpa(), new RamInstaller(ram, hook));
        this.requests = new AtomicLongArray(vcpus);
        this.results = new AtomicReferenceArray<>(vcpus);
        this.done = new AtomicLongArray(vcpus);
        this.waiters = new AtomicReferenceArray<>(vcpus);
        this.handler = Thread.ofPlatform().daemon().name("blocking-fault-handler").start(this::serveLoop);
    }

    public FaultCore core() { return core; }

    @Override
    public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
        String refused = FaultRange.refusal(core, requests.length(), vcpuIndex, fault.gpa());
        if (refused != null) return refused;
        long gpa = fault.gpa() & -FaultCore.PAGE;
        if (waiters.get(vcpuIndex) == null) waiters.set(vcpuIndex, Thread.currentThread());
        done.set(vcpuIndex, 0);
        requests.set(vcpuIndex, gpa + 1);
        LockSupport.unpark(handler);
        while (done.get(vcpuIndex) == 0) {
            if (stopping) return "the blocking fault handler was closed";
            LockSupport.park(this);
        }
        return results.get(vcpuIndex);
    }

    private void serveLoop() {
        while (!stopping) {
            boolean found = false;
            for (int v = 0; v < requests.length(); v++) {
                long req = requests.get(v);
                if (req == EMPTY) continue;
                found = true;
                requests.set(v, EMPTY);
                results.set(v, serve(v, req - 1));
                done.set(v, 1);
                LockSupport.unpark(waiters.get(v));
            }
            if (!found) LockSupport.park(this);
        }
    }

    private String serve(int vcpu, long gpa) {
        try {
            while (true) {
                int r = core.serveFault(lane, vcpu, gpa);
                if (r > 0) return null;
                if (r == 0) return null;
                if (r == FaultCore.GONE) return "the page could not be installed (address space going away)";
                // WAIT cannot happen with one lane unless another delivery shares the core; RETRY: again.
                if (r == FaultCore.WAIT) Thread.onSpinWait();
            }
        } catch (PageSourceException e) {
            return e.getMessage();
        }
    }

    @Override
    public void close() {
        stopping = true;
        LockSupport.unpark(handler);
        for (int v = 0; v < waiters.length(); v++) {
            Thread t = waiters.get(v);
            if (t != null) LockSupport.unpark(t);
        }
        try {
            handler.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
