package dev.faultline.vmm;

import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.Vm;
import java.util.ArrayList;
import java.time.Duration;
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
        this(hypervisor, spec, null);
    }

    /**
     * Builds the machine from {@code shell} (VM and RAM already installed; null: from nothing), which
     * it takes over: from here on the machine closes them, also when this constructor fails.
     * @throws IllegalArgumentException when the shell does not fit the spec ({@link VmShell#fits})
     */
    public Machine(Hypervisor hypervisor, MachineSpec spec, VmShell shell) {
        long t0 = System.nanoTime();
        this.hypervisor = hypervisor;
        this.spec = spec;
        if (shell != null && !shell.fits(hypervisor, spec)) {
            shell.close();
            throw new IllegalArgumentException("the VM shell (RAM " + shell.ramSize() + " bytes) does not fit the machine (RAM "
                    + spec.ramSize() + " bytes, type " + spec.vmType() + ", main slot flags 0x" + Integer.toHexString(spec.mainSlotFlags()) + ")");
        }
        GuestRam r = shell != null ? shell.ram() : GuestRam.allocate(spec.ramSize(), spec.backing());
        Vm v = shell != null ? shell.takeVm() : null;
        try {
            if (spec.initialState() == null) spec.image().installWithSystemTables(r.segment(), r.size());
            if (v == null) {
                v = hypervisor.createVm(spec.vmType());
                r.install(v, 0, spec.mainSlotFlags());
            }
            for (int i = 0; i < spec.vcpus(); i++) {
                Vcpu c = v.createVcpu(i);
                vcpus.add(c);
                if (spec.awaitsState()) {
                    continue; // loadState() sets it before the start
                } else if (spec.initialState() == null) {
                    BootSetup.boot(c, spec.image().entry(), i, spec.vcpus());
                } else {
                    VcpuState st = spec.initialState().get(i);
                    c.setSregs(st.sregs());
                    c.setRegs(st.regs());
                }
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

    private boolean stateLoaded;

    /**
     * Sets every vCPU's registers and special registers (one entry per vCPU, in order) before the
     * start, for a machine built with {@link MachineSpec#awaitingState}.
     */
    public void loadState(List<VcpuState> states) {
        if (started) throw new IllegalStateException("the vCPU state can only be loaded before the machine starts");
        if (states.size() != vcpus.size()) {
            throw new IllegalArgumentException("saved state holds " + states.size() + " vCPUs, the machine has " + vcpus.size());
        }
        for (int i = 0; i < vcpus.size(); i++) {
            vcpus.get(i).setSregs(states.get(i).sregs());
            vcpus.get(i).setRegs(states.get(i).regs());
        }
        stateLoaded = true;
    }

    public Vm vm() { return vm; }
    public GuestRam ram() { return ram; }
    public List<Vcpu> vcpus() { return vcpus; }

    /** Runs every vCPU to its end (or the spec's timeout) and reports: {@code start().await()}. */
    public RunReport run() {
        return start().await();
    }

    /**
     * Starts one thread per vCPU and returns at once. The spec's {@link MemoryPreparer} prepares RAM
     * before the first entry and is closed after the last vCPU stopped, before RAM is hashed.
     * A machine is started once.
     */
    public Execution start() {
        return start(-1, 0);
    }

    /**
     * Starts like {@link #start()}, with a deterministic pause point: right after vCPU {@code vcpu}'s
     * {@code exits}-th guest exit (kicks not counted) has been handled, that vCPU parks and every other
     * vCPU is asked to pause. {@link Execution#awaitPausePoint} waits for it.
     */
    public Execution startPausingAtExit(int vcpu, long exits) {
        if (vcpu < 0 || vcpu >= vcpus.size()) throw new IllegalArgumentException("no vCPU " + vcpu + " in a machine of " + vcpus.size());
        if (exits < 1) throw new IllegalArgumentException("the pause point is an exit number from 1, got " + exits);
        return start(vcpu, exits);
    }

    private Execution start(int pauseVcpu, long pauseExits) {
        if (started) throw new IllegalStateException("this machine was already started");
        if (spec.awaitsState() && !stateLoaded) throw new IllegalStateException("this machine awaits its vCPU state: call loadState first");
        started = true;
        return new Execution(pauseVcpu, pauseExits);
    }

    private boolean started;

    /** A running machine: pause it at an instruction boundary, read its state, resume it, await its end. */
    public final class Execution {
        private final List<VcpuRunner> runners = new ArrayList<>();
        private final List<Thread> threads = new ArrayList<>();
        private final MemoryPreparer.Session session;
        private final long t0;
        private RunReport report;

        private final int pauseVcpu;

        private Execution(int pauseVcpu, long pauseExits) {
            this.pauseVcpu = pauseVcpu;
            for (int i = 0; i < vcpus.size(); i++) {
                runners.add(new VcpuRunner(i, vcpus.get(i), spec.faultHandler(), spec.exitLogLimit(), spec.consoleEcho()));
            }
            if (pauseVcpu >= 0) {
                runners.get(pauseVcpu).pauseAtExit(pauseExits, () -> { for (VcpuRunner r : runners) r.requestPause(); });
            }
            session = spec.memoryPreparer().prepare(new MemoryPreparer.Context(vm, ram, vcpus.size(),
                    reason -> { for (VcpuRunner r : runners) r.requestStop(reason); }));
            t0 = System.nanoTime();
            // vCPUs enter the guest together: a fast backend could otherwise finish one vCPU's whole run
            // before the next thread is even scheduled, which no real machine does.
            java.util.concurrent.Phaser startGate = new java.util.concurrent.Phaser(runners.size());
            try {
                for (int i = 0; i < runners.size(); i++) {
                    VcpuRunner runner = runners.get(i);
                    int index = i;
                    threads.add(Thread.ofPlatform().name("vcpu-" + i).unstarted(() -> {
                        session.vcpuThreadStarted(index);
                        startGate.arriveAndAwaitAdvance();
                        runner.run();
                        session.vcpuThreadStopping(index);
                        if (runner.failed()) {
                            for (VcpuRunner other : runners) if (other != runner) other.requestStop("stopped because vCPU " + index + " failed");
                        }
                    }));
                }
                threads.forEach(Thread::start);
            } catch (RuntimeException e) {
                session.close();
                throw e;
            }
        }

        /**
         * Pauses every vCPU at an instruction boundary, with no I/O completion pending, and returns
         * their states in vCPU order; a vCPU that already finished is returned with its final state.
         * RAM may be read while paused.
         */
        public List<VcpuState> pause(Duration timeout) {
            for (VcpuRunner r : runners) r.requestPause();
            List<VcpuState> states = new ArrayList<>();
            try {
                for (int i = 0; i < runners.size(); i++) {
                    VcpuRunner r = runners.get(i);
                    if (r.awaitParked(timeout.toNanos())) {
                        states.add(r.pausedState());
                    } else {
                        states.add(new VcpuState(r.result().regs(), vcpus.get(i).getSregs()));
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while pausing the machine", e);
            }
            return states;
        }

        /**
         * Waits for the pause point of {@link #startPausingAtExit}, then for every vCPU to pause, and
         * returns their states as {@link #pause} does.
         * @throws IllegalStateException when the vCPU finished before its pause point
         */
        public List<VcpuState> awaitPausePoint(Duration timeout) {
            if (pauseVcpu < 0) throw new IllegalStateException("this machine was started without a pause point");
            VcpuRunner r = runners.get(pauseVcpu);
            try {
                if (!r.awaitParked(timeout.toNanos())) {
                    throw new IllegalStateException("vCPU " + pauseVcpu + " finished after " + r.guestExits()
                            + " exits, before its pause point");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for the pause point", e);
            }
            return pause(timeout);
        }

        /** True when vCPU {@code index} has ended (done, halted, failed or stopped), not merely paused. */
        public boolean hasFinished(int index) {
            return runners.get(index).hasFinished();
        }

        /** Exits vCPU {@code index}'s guest made so far (kicks not counted); exact while it is paused or finished. */
        public long guestExits(int index) {
            return runners.get(index).guestExits();
        }

        /** Lets every paused vCPU enter the guest again. */
        public void resume() {
            for (VcpuRunner r : runners) r.resume();
        }

        /** Stops every vCPU (paused or running) with {@code reason}. */
        public void stop(String reason) {
            for (VcpuRunner r : runners) r.requestStop(reason);
        }

        /** Waits for every vCPU to end (or the spec's timeout, counted from the start), then reports. */
        public RunReport await() {
            if (report != null) return report;
            try {
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
            report = new RunReport(hypervisor.name(), ram.size(), results, ram.sha256(), total.asMap(), setupNanos, runNanos);
            return report;
        }
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
