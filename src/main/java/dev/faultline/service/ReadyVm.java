package dev.faultline.service;

import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vm;
import dev.faultline.snapshot.Restore;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.VmShell;
import java.util.function.Consumer;

/**
 * What the service keeps between restores so that a request does not wait for it: its backend,
 * opened once (KVM's /dev/kvm descriptor and what it caches), and one VM shell (VM, RAM mapping,
 * memslots; no vCPU, so nothing can run in it) built after each restore for that restore's RAM size,
 * which the next restore of that size takes instead of building its own. A restore of another size
 * or on another backend builds its own, as a restore in a fresh process does.
 *
 * <p>Threading: used under the service's restore lock only.
 */
final class ReadyVm implements Restore.Shells, AutoCloseable {
    private final Hypervisor backend;
    private final Hypervisor shared;
    private final Consumer<String> log;
    private VmShell ready;
    private boolean taken;
    private boolean closed;

    ReadyVm(String backendName, Consumer<String> log) {
        this.backend = Backends.open(backendName);
        this.shared = new KeptOpen(backend);
        this.log = log;
    }

    /** The service's backend (kept open: a restore's close does not close it) for its name or "auto"; any other opened anew. */
    Hypervisor open(String name) {
        return name.equals(backend.name()) || name.equals("auto") ? shared : Backends.open(name);
    }

    @Override
    public VmShell take(Hypervisor hv, long ramBytes) {
        if (hv != shared || ready == null || ready.ramSize() != ramBytes) return null;
        VmShell s = ready;
        ready = null;
        taken = true;
        return s;
    }

    /** Whether a restore took the VM built ahead since the last call. */
    boolean takenSinceAsked() {
        boolean t = taken;
        taken = false;
        return t;
    }

    /** Builds a shell of {@code ramBytes} unless one is ready; one of another size is closed first. */
    void prepare(long ramBytes) {
        if (ready != null && ready.ramSize() == ramBytes) return;
        if (ready != null) ready.close();
        ready = null;
        try {
            ready = Restore.newShell(shared, ramBytes);
        } catch (RuntimeException e) {
            log.accept("cannot build a VM ahead for " + ramBytes + " bytes of RAM (" + e.getMessage() + "); the next restore builds its own");
        }
    }

    long readyRamBytes() { return ready == null ? 0 : ready.ramSize(); }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (ready != null) ready.close();
        ready = null;
        backend.close();
    }

    /** The backend, with close() left to {@link ReadyVm#close}. */
    private record KeptOpen(Hypervisor hv) implements Hypervisor {
        @Override public String name() { return hv.name(); }
        @Override public int apiVersion() { return hv.apiVersion(); }
        @Override public long checkExtension(int cap) { return hv.checkExtension(cap); }
        @Override public Vm createVm(int type) { return hv.createVm(type); }
        @Override public void close() { }
    }
}
