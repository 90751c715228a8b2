package dev.faultline.vmm;

import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.Vm;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A guest assembled from a {@link MachineSpec}: its VM, RAM, image and vCPUs, run with one platform
 * thread per vCPU (KVM_RUN blocks in the kernel, so virtual threads would only pin their carriers).
 * When one vCPU fails, the others are stopped: a half-failed guest is not left running.
 */
public final class Machine implements AutoCloseable {
    private final Hypervisor hypervisor;
    private final MachineSpec spec;
    private final Vm vm;
    private final GuestRam ram;
    private final List<Vcpu> vcpus = new ArrayList<>();
    private final long setupNanos;

    public Machine(Hypervisor hypervisor, MachineSpec spec) {
        long t0 = System.nanoTime();
        this.hypervisor = hypervisor;
        this.spec = spec;
        GuestRam r = GuestRam.allocate(spec.ramSize(), spec.backing());
        Vm v = null;
        try {
            spec.image().installWithSystemTables(r.segment(), r.size());
            v = hypervisor.createVm(spec.vmType());
            r.install(v, 0, spec.mainSlotFlags());
            for (int i = 0; i < spec.vcpus(); i++) {
                Vcpu c = v.createVcpu(i);
                vcpus.add(c);
                c.setSregs(BootSetup.sregs(c.getSregs()));
                c.setRegs(BootSetup.regs(spec.image().entry(), i, spec.vcpus()));
            }
        } catch (RuntimeException e) {
            for (Vcpu c : vcpus) c.close();
            if (v != null) v.close();
            r.close();
            throw e;
        }
        this.vm = v;
        this.ram = r;
        this.setupNanos = System.nanoTime() - t0;
    }

    public Vm vm() { return vm; }
    public GuestRam ram() { return ram; }
    public List<Vcpu> vcpus() { return vcpus; }

    /**
     * Runs every vCPU to its end (or the spec's timeout) and reports. The spec's
     * {@link MemoryPreparer} prepares RAM before the first entry and is closed after the last vCPU
     * stopped, before RAM is hashed.
     */
    public RunReport run() {
        List<VcpuRunner> runners = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < vcpus.size(); i++) {
            runners.add(new VcpuRunner(i, vcpus.get(i), spec.faultHandler(), spec.exitLogLimit(), spec.consoleEcho()));
        }
        MemoryPreparer.Session session = spec.memoryPreparer().prepare(new MemoryPreparer.Context(vm, ram, vcpus.size(),
                reason -> { for (VcpuRunner r : runners) r.requestStop(reason); }));
        long t0;
        try {
            t0 = System.nanoTime();
            for (int i = 0; i < runners.size(); i++) {
                VcpuRunner runner = runners.get(i);
                int index = i;
                Thread t = Thread.ofPlatform().name("vcpu-" + i).unstarted(() -> {
                    session.vcpuThreadStarted(index);
                    runner.run();
                    if (runner.failed()) {
                        for (VcpuRunner other : runners) if (other != runner) other.requestStop("stopped because vCPU " + runner.result().index() + " failed");
                    }
                });
                threads.add(t);
            }
            threads.forEach(Thread::start);
            awaitAll(runners, threads, t0);
        } finally {
            session.close();
        }
        long runNanos = System.nanoTime() - t0;
        List<VcpuResult> results = new ArrayList<>();
        ExitStats total = new ExitStats();
        for (VcpuRunner r : runners) {
            results.add(r.result());
            r.stats().addTo(total);
        }
        return new RunReport(hypervisor.name(), ram.size(), results, ram.sha256(), total.asMap(), setupNanos, runNanos);
    }

    private void awaitAll(List<VcpuRunner> runners, List<Thread> threads, long t0) {
        long deadline = t0 + spec.timeout().toNanos();
        boolean timedOut = false;
        for (Thread t : threads) {
            try {
                long left = deadline - System.nanoTime();
                if (left > 0 && !t.join(java.time.Duration.ofNanos(left))) timedOut = true;
                if (left <= 0 && t.isAlive()) timedOut = true;
                if (timedOut) break;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                timedOut = true;
                break;
            }
        }
        if (timedOut) {
            for (VcpuRunner r : runners) r.requestStop("stopped after the timeout of " + spec.timeout().toSeconds() + " s");
            for (Thread t : threads) {
                try {
                    if (!t.join(java.time.Duration.ofSeconds(10))) {
                        throw new IllegalStateException(t.getName() + " did not stop within 10 s of being kicked");
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    static long millis(long nanos) {
        return TimeUnit.NANOSECONDS.toMillis(nanos);
    }

    @Override
    public void close() {
        for (Vcpu c : vcpus) c.close();
        vm.close();
        ram.close();
    }
}
