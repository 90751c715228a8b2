package dev.faultline.paging.exit;

import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSourceException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
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
 * <p>Handler thread {@code h} of {@code n} serves vCPUs {@code h, h+n, h+2n, ...} through a fault-core
 * lane of its own, as the kvm backend's default gives each vCPU its own userfaultfd handler; with
 * {@code n = 1} one thread serves every vCPU in turn. Pinned, handler {@code h} runs on CPU
 * {@code h} (modulo the CPUs) and its vCPUs' threads pin themselves there too ({@link #pinVcpuThread}),
 * as the kvm backend's paired handlers do: the two then hand each fault back and forth with same-CPU
 * context switches, not cross-CPU wake-ups (an interrupt to a halted CPU here). Requests travel through one slot per vCPU (no
 * queue, no lock, no allocation): slot value 0 is empty, gpa + 1 is a request, and the handler
 * answers by writing the slot's result.
 */
public final class BlockingFaultHandler implements MemoryFaultHandler, AutoCloseable {
    private static final long EMPTY = 0;

    private final FaultCore core;
    private final FaultCore.Lane[] lanes;
    private final AtomicLongArray requests;
    private final AtomicReferenceArray<String> results;
    private final AtomicLongArray done;
    private final AtomicReferenceArray<Thread> waiters;
    private final Thread[] handlers;
    private final boolean pinned;
    private volatile boolean stopping;

    /** One handler thread per vCPU, unpinned. */
    public BlockingFaultHandler(FaultCore core, HostMemory ram, int vcpus, PresentHook hook) {
        this(core, ram, vcpus, hook, vcpus, false);
    }

    /** {@code handlers} threads (1..vcpus), vCPU {@code v} served by thread {@code v % handlers}, pinned or not. */
    public BlockingFaultHandler(FaultCore core, HostMemory ram, int vcpus, PresentHook hook, int handlers, boolean pinned) {
        if (handlers < 1 || handlers > vcpus) throw new IllegalArgumentException("blocking delivery needs 1.." + vcpus + " handler threads, not " + handlers);
        this.core = core;
        this.pinned = pinned;
        this.requests = new AtomicLongArray(vcpus);
        this.results = new AtomicReferenceArray<>(vcpus);
        this.done = new AtomicLongArray(vcpus);
        this.waiters = new AtomicReferenceArray<>(vcpus);
        this.lanes = new FaultCore.Lane[handlers];
        this.handlers = new Thread[handlers];
        for (int h = 0; h < handlers; h++) {
            lanes[h] = core.newLane("blocking-handler-" + h, core.baseGpa(), core.endGpa(), new RamInstaller(ram, hook));
        }
        for (int h = 0; h < handlers; h++) {
            int index = h;
            this.handlers[h] = Thread.ofPlatform().daemon().name("blocking-fault-handler-" + h).start(() -> {
                if (pinned) Libc.pinCurrentThreadToCpuOf(index);
                serveLoop(index);
            });
        }
    }

    public FaultCore core() { return core; }

    public int handlers() { return handlers.length; }

    /** When pinned: pins the calling thread, vCPU {@code vcpu}'s, to its handler's CPU (call it on that thread). */
    public void pinVcpuThread(int vcpu) {
        if (pinned) Libc.pinCurrentThreadToCpuOf(vcpu % handlers.length);
    }

    @Override
    public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
        String refused = FaultRange.refusal(core, requests.length(), vcpuIndex, fault.gpa());
        if (refused != null) return refused;
        long gpa = fault.gpa() & -FaultCore.PAGE;
        if (waiters.get(vcpuIndex) == null) waiters.set(vcpuIndex, Thread.currentThread());
        done.set(vcpuIndex, 0);
        requests.set(vcpuIndex, gpa + 1);
        LockSupport.unpark(handlers[vcpuIndex % handlers.length]);
        while (done.get(vcpuIndex) == 0) {
            if (stopping) return "the blocking fault handler was closed";
            LockSupport.park(this);
        }
        return results.get(vcpuIndex);
    }

    private void serveLoop(int h) {
        FaultCore.Lane lane = lanes[h];
        int step = handlers.length;
        while (!stopping) {
            boolean found = false;
            for (int v = h; v < requests.length(); v += step) {
                long req = requests.get(v);
                if (req == EMPTY) continue;
                found = true;
                requests.set(v, EMPTY);
                results.set(v, serve(lane, v, req - 1));
                done.set(v, 1);
                LockSupport.unpark(waiters.get(v));
            }
            if (!found) LockSupport.park(this);
        }
    }

    private String serve(FaultCore.Lane lane, int vcpu, long gpa) {
        try {
            while (true) {
                int r = core.serveFault(lane, vcpu, gpa);
                if (r >= 0) return null;
                if (r == FaultCore.GONE) return "the page could not be installed (address space going away)";
                // WAIT: another lane (another handler) is installing this page; RETRY: again.
                if (r == FaultCore.WAIT) Thread.onSpinWait();
            }
        } catch (PageSourceException e) {
            return e.getMessage();
        }
    }

    @Override
    public void close() {
        stopping = true;
        for (Thread h : handlers) LockSupport.unpark(h);
        for (int v = 0; v < waiters.length(); v++) {
            Thread t = waiters.get(v);
            if (t != null) LockSupport.unpark(t);
        }
        try {
            for (Thread h : handlers) h.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
