package dev.faultline.paging;

import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import java.util.List;

/**
 * Demand paging of the main memslot through a {@link FaultCore}, whatever delivers the faults: what
 * lazy snapshot restore and a post-copy migration destination need from a backend.
 * <ul>
 *   <li>{@link dev.faultline.paging.uffd.UffdPager} (kvm): userfaultfd, handler threads; vCPUs sleep
 *       in the kernel and never see a memory-fault exit.</li>
 *   <li>{@link dev.faultline.paging.exit.ExitPager} (ref): exit on missing; each vCPU serves its own
 *       memory-fault exit and re-enters.</li>
 * </ul>
 * A machine uses one as its {@link MemoryPreparer} and its {@link #faultHandler()} as the spec's
 * memory-fault handler.
 */
public interface DemandPager extends MemoryPreparer {
    FaultCore core();

    /** The handler for the machine's memory-fault exits ({@link MemoryFaultHandler#NONE} when faults never exit). */
    MemoryFaultHandler faultHandler();

    /** The first failure of the last run (a source error: the page was not installed), or null. */
    String failureMessage();

    /**
     * Lanes for one thread that installs pages nobody faulted on ({@link FaultCore#offer}: pages a
     * migration source pushes), covering the paged range; runs must not cross a lane. Only while a
     * run is prepared.
     */
    List<FaultCore.Lane> addLanes(String name, int maxRunPages);

    /** The lane of {@code lanes} (from {@link #addLanes}) that covers {@code gpa}. */
    static FaultCore.Lane laneOf(List<FaultCore.Lane> lanes, long gpa) {
        for (FaultCore.Lane l : lanes) if (gpa >= l.firstGpa() && gpa < l.endGpa()) return l;
        throw new IllegalStateException(String.format("no lane covers 0x%x", gpa));
    }
}
