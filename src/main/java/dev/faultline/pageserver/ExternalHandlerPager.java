package dev.faultline.pageserver;

import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageStates;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.Pagemap;
import dev.faultline.vmm.MemoryFaultHandler;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Lazy RAM served by an external page-fault handler, handed over exactly as Firecracker hands its
 * guest memory over ({@link FirecrackerVmm}, the v1.12+ handshake): faultline's own restore becomes
 * the VMM side of the protocol ({@code restore --uffd-handler SOCKET}), so the protocol is exercised
 * from both ends. Guest RAM is described as two regions, the low 1 MiB (written before the start;
 * never faults) and the main memslot, listed out of order as Firecracker may list them; file offsets
 * are guest-physical addresses, so the handler serves the snapshot's RAM image (uffd-handler
 * --snapshot DIR, or a flat memory file).
 *
 * <p>This process never serves a fault itself: its {@link FaultCore} serves no page, and stays for
 * what restore does after the guest ended (copying in the pages the guest never touched: the pages
 * the handler installed are found in the page table and marked present first). If the handler hangs
 * up while the guest runs, the machine is stopped with that reason; a vCPU waiting for a page is
 * released as in {@link dev.faultline.paging.uffd.UffdPager} (the range made inaccessible, then
 * unregistered: its KVM_RUN fails with EFAULT), never left waiting.
 */
public final class ExternalHandlerPager implements DemandPager {
    private final FaultCore core;
    private final Path socket;
    private final AtomicReference<String> failure = new AtomicReference<>();

    public ExternalHandlerPager(FaultCore core, Path socket) {
        this.core = core;
        this.socket = socket;
    }

    @Override public FaultCore core() { return core; }
    @Override public MemoryFaultHandler faultHandler() { return MemoryFaultHandler.NONE; }
    @Override public String failureMessage() { return failure.get(); }

    @Override
    public List<FaultCore.Lane> addLanes(String name, int maxRunPages) {
        throw new IllegalStateException("pages are installed by the external handler at " + socket + ", not offered by this process");
    }

    @Override
    public Session prepare(Context context) {
        HostMemory mem = context.ram().memory();
        long low = core.baseGpa();
        List<GuestRegionMapping> regions = List.of(new GuestRegionMapping(mem.address() + low, mem.size() - low, low, Handshake.PAGE),
                new GuestRegionMapping(mem.address(), low, 0, Handshake.PAGE));
        FirecrackerVmm vmm;
        try {
            vmm = FirecrackerVmm.handOff(socket, regions, FirecrackerVersion.V1_12, false);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("cannot hand guest RAM to the page-fault handler at " + socket + ": " + e.getMessage(), e);
        }
        return new Running(context, mem, vmm);
    }

    private final class Running implements Session {
        private final Context context;
        private final HostMemory mem;
        private final FirecrackerVmm vmm;
        private final Thread watcher;
        private volatile boolean closing;
        private boolean revoked, unregistered;

        Running(Context context, HostMemory mem, FirecrackerVmm vmm) {
            this.context = context;
            this.mem = mem;
            this.vmm = vmm;
            this.watcher = Thread.ofPlatform().daemon().name("uffd-handler-watch").start(this::watch);
        }

        /** Waits for the handler's hang-up (it failed or ended) while the guest runs. */
        private void watch() {
            while (!closing) {
                if (!vmm.handlerHungUp(100)) continue;
                if (closing) return;
                String why = "the page-fault handler at " + socket + " closed its connection while the guest ran (it failed or ended: its log says why)";
                failure.compareAndSet(null, why);
                context.stopMachine().accept(why);
                release();
                return;
            }
        }

        /** A vCPU waiting for a page that will not come: make the range inaccessible, then unregister it, so its access fails. */
        private synchronized void release() {
            if (!revoked) {
                revoked = true;
                mem.protect(0, mem.size(), Libc.PROT_NONE);
            }
            unregister();
        }

        private synchronized void unregister() {
            if (unregistered) return;
            unregistered = true;
            for (GuestRegionMapping r : vmm.regions()) vmm.uffd().unregister(r.baseHostVirtAddr(), r.size());
        }

        @Override
        public void close() {
            closing = true;
            try {
                watcher.join(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            unregister();
            vmm.close();
            synchronized (this) {
                if (revoked) mem.protect(0, mem.size(), Libc.PROT_READ | Libc.PROT_WRITE);
            }
            markInstalledPresent();
        }

        /** Pages the handler installed are in this process's page table: present for the core, so nothing copies over them. */
        private void markInstalledPresent() {
            PageStates st = core.states();
            try (Pagemap pm = Pagemap.open()) {
                for (long p = 0; p < st.pages(); p += Pagemap.MAX_PAGES) {
                    int n = (int) Math.min(Pagemap.MAX_PAGES, st.pages() - p);
                    long never = pm.available() ? pm.neverPopulated(mem, core.gpaOf(p), n) : 0;
                    for (int i = 0; i < n; i++) if ((never & (1L << i)) == 0) st.markPresentBeforeStart(p + i, 1);
                }
            }
        }
    }
}
