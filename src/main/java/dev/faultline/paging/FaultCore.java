package dev.faultline.paging;

import dev.faultline.sys.Errno;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The fault-serving core every delivery shares: a fault at a guest page is turned into "fill these
 * pages from the {@link PageSource}, install them with the lane's {@link Installer}", each page
 * exactly once ({@link PageStates}), with the lane's {@link Prefetch} deciding how many pages a fault
 * brings and what is installed in the background.
 *
 * <p>A <em>lane</em> is one thread that serves faults: a userfaultfd handler thread, or a vCPU serving
 * its own memory-fault exits. Each lane owns its installer, statistics and prefetch state, so the
 * hot path takes no lock and allocates nothing; lanes meet only in the page-state array.
 */
public final class FaultCore {
    public static final long PAGE = 4096;
    public static final int PAGE_SHIFT = 12;

    /** {@link #serveFault} results besides a page count. */
    public static final int WAIT = -1, RETRY = -2, GONE = -3;

    private final PageSource source;
    private final long baseGpa;
    private final long pageCount;
    private final PageStates states;
    private final Prefetch prefetch;
    private final int vcpus;
    private final boolean recording;
    private final MemorySegment zeros;
    private final List<Lane> lanes = new ArrayList<>();
    private volatile long recordUntil = Long.MAX_VALUE;

    /**
     * @param baseGpa   first guest-physical byte of the paged range (page-aligned)
     * @param size      bytes in the paged range
     * @param vcpus     vCPUs whose latencies are kept apart
     * @param recordWorkingSet keep the order of first touches ({@link #recordedWorkingSet()})
     */
    public FaultCore(PageSource source, long baseGpa, long size, int vcpus, Prefetch prefetch, boolean recordWorkingSet) {
        if (((baseGpa | size) & (PAGE - 1)) != 0 || size <= 0) {
            throw new IllegalArgumentException(String.format("paged range [0x%x, +0x%x) must be page-aligned and non-empty", baseGpa, size));
        }
        this.source = source;
        this.baseGpa = baseGpa;
        this.pageCount = size >>> PAGE_SHIFT;
        this.states = new PageStates(pageCount);
        this.prefetch = prefetch;
        this.vcpus = vcpus;
        this.recording = recordWorkingSet;
        this.zeros = HostMemory.scratch((long) prefetch.maxRunPages() * PAGE); // never written: reads map the zero page
    }

    /**
     * Records first touches only until {@code nanos} from now ({@link System#nanoTime}): the working set
     * of a run's first moments. Without it a recording core records the whole run.
     */
    public void recordFor(long nanos) {
        if (nanos <= 0) throw new IllegalArgumentException("a recording window must be positive, not " + nanos + " ns");
        recordUntil = System.nanoTime() + nanos;
    }

    public PageSource source() { return source; }
    public Prefetch prefetch() { return prefetch; }
    public PageStates states() { return states; }
    public long baseGpa() { return baseGpa; }
    public long endGpa() { return baseGpa + (pageCount << PAGE_SHIFT); }
    public int vcpus() { return vcpus; }
    /** A read-only source of zeros, as long as the largest run (installers copy from it). */
    public MemorySegment zeros() { return zeros; }

    public boolean contains(long gpa) { return gpa >= baseGpa && gpa - baseGpa < (pageCount << PAGE_SHIFT); }

    /** Page index of {@code gpa} in the paged range. */
    public long pageOf(long gpa) {
        if (!contains(gpa)) {
            throw new IllegalArgumentException(String.format("gpa 0x%x is outside the paged range [0x%x, 0x%x)", gpa, baseGpa, endGpa()));
        }
        return (gpa - baseGpa) >>> PAGE_SHIFT;
    }

    public long gpaOf(long page) { return baseGpa + (page << PAGE_SHIFT); }

    /**
     * A lane that serves faults in [fromGpa, toGpa) (a delivery may split the range, e.g. one
     * userfaultfd per part; runs never cross the lane's range). Call before serving starts.
     */
    public synchronized Lane newLane(String name, long fromGpa, long toGpa, Installer installer) {
        long lo = pageOf(fromGpa);
        long hi = toGpa == endGpa() ? pageCount : pageOf(toGpa);
        if (hi <= lo) throw new IllegalArgumentException("lane " + name + " has an empty range");
        Lane lane = new Lane(name, lo, hi, installer);
        lanes.add(lane);
        return lane;
    }

    public synchronized List<Lane> lanes() { return List.copyOf(lanes); }

    /**
     * Serves a fault of vCPU {@code vcpu} (or -1: unknown) at {@code gpa} on {@code lane}'s thread.
     * @return pages this call installed (0 when the page was there already: its waiters are woken), {@link #WAIT}
     *     when another lane is fetching it (its install wakes uffd waiters; exit delivery waits for
     *     {@link PageStates#isPresent}), {@link #RETRY} when the install met EAGAIN (read pending events,
     *     then call again: the faulting thread still waits), {@link #GONE} when the address space is
     *     going away
     * @throws PageSourceException when the source fails (the pages are MISSING again)
     */
    public int serveFault(Lane lane, int vcpu, long gpa) {
        long t0 = System.nanoTime();
        long page = pageOf(gpa);
        if (page < lane.lo || page >= lane.hi) {
            throw new IllegalArgumentException(String.format("gpa 0x%x is outside lane %s [0x%x, 0x%x)", gpa, lane.name,
                    gpaOf(lane.lo), gpaOf(lane.hi)));
        }
        while (true) {
            byte st = states.get(page);
            if (st == PageStates.MISSING) {
                if (!states.claim(page)) continue;
                if (recording && t0 - recordUntil < 0) lane.recordTouch(gpaOf(page), t0);
                Stream s = lane.stream(vcpu);
                int want = s.want(page);
                int n = 1 + states.claimRun(page + 1, want - 1, lane.hi);
                int r = installRun(lane, page, n);
                if (r >= 0) {
                    s.served(page, n, lane.hi);
                    lane.stats.recordFault(vcpu, System.nanoTime() - t0, r);
                }
                return r;
            }
            if (st == PageStates.FETCHING) {
                lane.stats.waits++;
                return WAIT;
            }
            // PRESENT: the install that made it present woke every thread waiting on it when the
            // fault was queued before it; a fault queued after it found the page mapped and never
            // slept. Wake anyway (cheap, harmless) so a lost wake-up cannot strand a thread.
            // A page can't be PRESENT here yet unmapped: a REMOVE resets it to MISSING before the
            // kernel zaps it, and markPresent never overrides that reset.
            lane.installer.wake(gpaOf(page), PAGE);
            lane.stats.presentWakes++;
            return 0;
        }
    }

    /**
     * The pages of [gpa, gpa + len) were dropped by the kernel (a REMOVE event: MADV_DONTNEED or
     * MADV_REMOVE on guest RAM): they are MISSING again, and the next touch fetches them afresh.
     */
    public void invalidate(long gpa, long len) {
        long from = Math.max(gpa, baseGpa), to = Math.min(gpa + len, endGpa());
        if (to <= from) return;
        long first = (from - baseGpa) >>> PAGE_SHIFT, last = (to - baseGpa + PAGE - 1) >>> PAGE_SHIFT;
        states.reset(first, last - first);
    }

    /**
     * One step of background work on this lane's thread while no fault is pending: the next chunk
     * of async readahead, or of the replayed working set. Returns the pages installed; 0 when there
     * is nothing left to do (then the lane may sleep).
     */
    public int prefetchStep(Lane lane) {
        for (Stream s : lane.streams) {
            while (s.cursor < s.end) {
                long page = s.cursor;
                if (states.get(page) != PageStates.MISSING || !states.claim(page)) {
                    s.cursor++;
                    continue;
                }
                int n = 1 + states.claimRun(page + 1, (int) Math.min(s.window - 1, s.end - page - 1), s.end);
                int r = installRun(lane, page, n);
                if (r < 0) {
                    s.end = s.cursor; // give up this stream; faults will restart it
                    return 0;
                }
                s.cursor = page + n;
                if (s.cursor >= s.end) s.expectNext = s.end;
                lane.stats.prefetchPages += r;
                return Math.max(r, 1);
            }
        }
        if (lane.replay != null) {
            while (lane.replayPos < lane.replay.length) {
                long page = lane.replay[lane.replayPos++];
                if (states.get(page) != PageStates.MISSING || !states.claim(page)) continue;
                int max = prefetch.maxRunPages();
                int n = 1;
                while (n < max && lane.replayPos < lane.replay.length && lane.replay[lane.replayPos] == page + n
                        && states.claim(page + n)) {
                    n++;
                    lane.replayPos++;
                }
                int r = installRun(lane, page, n);
                if (r < 0) {
                    lane.replayPos = lane.replay.length;
                    return 0;
                }
                lane.stats.prefetchPages += r;
                return Math.max(r, 1);
            }
        }
        return 0;
    }

    /** True when {@link #prefetchStep} has work. */
    public boolean hasPrefetchWork(Lane lane) {
        for (Stream s : lane.streams) if (s.cursor < s.end) return true;
        return lane.replay != null && lane.replayPos < lane.replay.length;
    }

    /**
     * Fills and installs the claimed run [page, page + n). Pages that turn out to be mapped already
     * (EEXIST) are woken and not counted. Returns the pages this call installed, or RETRY / GONE with
     * the unserved pages MISSING again.
     */
    private int installRun(Lane lane, long page, int n) {
        Installer inst = lane.installer;
        long gpa = gpaOf(page), len = (long) n << PAGE_SHIFT;
        boolean zero = source.isZero(gpa, len);
        if (!zero && inst.installsFromMemory()) {
            long mapped = source.mappedAddress(gpa, len);
            if (mapped != 0) return installClaimed(lane, page, n, false, mapped);
        }
        long off = inst.begin(gpa, len);
        try {
            if (!zero) source.fill(gpa, inst.target(), off, len);
            else if (inst.zeroNeedsFill()) MemorySegment.copy(zeros, 0, inst.target(), off, len);
        } catch (RuntimeException e) {
            states.reset(page, n);
            throw e;
        }
        return installClaimed(lane, page, n, zero && !inst.zeroNeedsFill());
    }

    /**
     * Installs pages that arrived without a fault asking for them (a migration source pushing RAM in
     * the background), on {@code lane}'s thread: every page of [gpa, gpa + pages) that is still
     * MISSING is claimed, copied from {@code data} (null: the pages are zeros) and installed; pages
     * already FETCHING or PRESENT (a fault got them first) are skipped, so a page is still installed
     * exactly once. Counted as background pages of the lane. {@code pages} must fit the lane
     * installer's staging (e.g. {@link dev.faultline.paging.uffd.UffdPager#addLanes}).
     * @return pages installed by this call; pages an install could not take (EAGAIN, address space
     *     going away) are MISSING again and will be fetched by a fault
     */
    public int offer(Lane lane, long gpa, int pages, MemorySegment data, long dataOffset) {
        long first = pageOf(gpa);
        if (first < lane.lo || first + pages > lane.hi) {
            throw new IllegalArgumentException(String.format("pages [0x%x, +%d) are outside lane %s [0x%x, 0x%x)", gpa, pages,
                    lane.name, gpaOf(lane.lo), gpaOf(lane.hi)));
        }
        Installer inst = lane.installer;
        int installed = 0;
        int i = 0;
        while (i < pages) {
            long page = first + i;
            if (!states.claim(page)) {
                lane.stats.offerSkipped++;
                i++;
                continue;
            }
            boolean zero = data == null;
            int room = zero && inst.zeroNeedsFill() ? (int) Math.min(pages - i, zeros.byteSize() >>> PAGE_SHIFT) : pages - i;
            int n = 1 + states.claimRun(page + 1, room - 1, lane.hi);
            long g = gpaOf(page), len = (long) n << PAGE_SHIFT;
            long direct = 0;
            if (!zero && data.isNative() && inst.installsFromMemory()) {
                direct = data.address() + dataOffset + ((long) i << PAGE_SHIFT); // no staging copy
            } else {
                long off = inst.begin(g, len);
                if (!zero) MemorySegment.copy(data, dataOffset + ((long) i << PAGE_SHIFT), inst.target(), off, len);
                else if (inst.zeroNeedsFill()) MemorySegment.copy(zeros, 0, inst.target(), off, len);
            }
            int r = installClaimed(lane, page, n, zero && !inst.zeroNeedsFill(), direct);
            if (r < 0) return installed;
            installed += r;
            lane.stats.prefetchPages += r;
            i += n;
        }
        return installed;
    }

    /** Installs the claimed, filled run [page, page + n); see {@link #installRun}. */
    private int installClaimed(Lane lane, long page, int n, boolean zeroSkipped) {
        return installClaimed(lane, page, n, zeroSkipped, 0);
    }

    /** ... with {@code direct} != 0: from the native bytes at that address ({@link Installer#installFrom}), not the installer's target. */
    private int installClaimed(Lane lane, long page, int n, boolean zeroSkipped, long direct) {
        Installer inst = lane.installer;
        long gpa = gpaOf(page), len = (long) n << PAGE_SHIFT;
        long done = 0;
        int installed = 0;
        while (done < len) {
            lane.stats.installCalls++;
            long r = direct != 0 ? inst.installFrom(gpa + done, len - done, direct + done) : inst.install(gpa + done, len - done, zeroSkipped);
            if (r > 0) {
                installed += (int) (r >>> PAGE_SHIFT);
                done += r;
            } else if (r == -Errno.EEXIST) {
                lane.stats.eexist++;
                inst.wake(gpa + done, PAGE);
                done += PAGE;
            } else {
                if (r == -Errno.EAGAIN) lane.stats.eagain++;
                else lane.stats.gone++;
                long donePages = done >>> PAGE_SHIFT;
                states.markPresent(page, donePages);
                states.reset(page + donePages, n - donePages);
                lane.stats.bytes += (long) installed << PAGE_SHIFT;
                if (donePages > 0) return installed; // the faulting page is in; the rest is fetched again later
                return r == -Errno.EAGAIN ? RETRY : GONE;
            }
        }
        states.markPresent(page, n);
        lane.stats.bytes += (long) installed << PAGE_SHIFT;
        return installed;
    }

    /** The first touches recorded by every lane, merged in time order (empty when not recording). */
    public synchronized WorkingSet recordedWorkingSet() {
        long[][] g = new long[lanes.size()][], t = new long[lanes.size()][];
        int[] c = new int[lanes.size()];
        for (int i = 0; i < lanes.size(); i++) {
            Lane l = lanes.get(i);
            g[i] = l.touchGpas;
            t[i] = l.touchTimes;
            c[i] = l.touchCount;
        }
        return WorkingSet.merge(g, t, c, endGpa());
    }

    /** Per-vCPU readahead state of one lane. */
    static final class Stream {
        final Prefetch prefetch;
        long expectNext = -1, cursor, end;
        int window;

        Stream(Prefetch prefetch) {
            this.prefetch = prefetch;
            this.window = prefetch instanceof Prefetch.Readahead r ? r.initialPages() : 1;
        }

        /**
         * Pages to install for a fault at {@code page}, faulting page included. With background
         * readahead only the first {@code initialPages} are installed while the vCPU waits; the rest
         * of the window follows in the background, so the fault's latency stays that of a small run.
         */
        int want(long page) {
            if (!(prefetch instanceof Prefetch.Readahead r)) return 1;
            boolean sequential = expectNext >= 0 && page >= expectNext && page <= Math.max(expectNext, end);
            window = sequential ? Math.min(window * 2, r.maxPages()) : r.initialPages();
            return r.aheadPages() > 0 ? r.initialPages() : window;
        }

        void served(long page, int n, long limit) {
            expectNext = page + n;
            if (prefetch instanceof Prefetch.Readahead r && r.aheadPages() > 0) {
                cursor = page + n;
                end = Math.min(limit, page + n + r.aheadPages());
            }
        }
    }

    /** One serving thread's state: installer, statistics, readahead per vCPU, replay cursor, touch record. */
    public final class Lane {
        final String name;
        final long lo, hi;
        final Installer installer;
        final LaneStats stats;
        final Stream[] streams;
        final long[] replay;
        int replayPos;
        final long[] touchGpas, touchTimes;
        int touchCount;

        Lane(String name, long lo, long hi, Installer installer) {
            this.name = name;
            this.lo = lo;
            this.hi = hi;
            this.installer = installer;
            this.stats = new LaneStats(vcpus);
            this.streams = new Stream[vcpus + 1];
            for (int i = 0; i < streams.length; i++) streams[i] = new Stream(prefetch);
            if (prefetch instanceof Prefetch.Replay r) {
                long[] mine = new long[r.order().size()];
                int k = 0;
                for (int i = 0; i < r.order().size(); i++) {
                    long g = r.order().gpa(i);
                    if (!contains(g)) continue;
                    long p = (g - baseGpa) >>> PAGE_SHIFT;
                    if (p >= lo && p < hi) mine[k++] = p;
                }
                replay = java.util.Arrays.copyOf(mine, k);
            } else {
                replay = null;
            }
            int cap = recording ? (int) Math.min(hi - lo, Integer.MAX_VALUE - 8) : 0;
            touchGpas = new long[cap];
            touchTimes = new long[cap];
        }

        Stream stream(int vcpu) {
            return streams[vcpu < 0 || vcpu >= vcpus ? vcpus : vcpu];
        }

        void recordTouch(long gpa, long time) {
            if (touchCount < touchGpas.length) {
                touchGpas[touchCount] = gpa;
                touchTimes[touchCount++] = time;
            }
        }

        public String name() { return name; }
        public LaneStats stats() { return stats; }
        public long firstGpa() { return gpaOf(lo); }
        public long endGpa() { return gpaOf(hi); }
    }
}
