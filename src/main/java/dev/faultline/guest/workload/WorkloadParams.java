package dev.faultline.guest.workload;

/**
 * What a workload is built for. {@code memSize} and {@code vcpus} are the VM's; the rest tune the
 * workloads that use them (docs/workloads.md says which):
 *
 * @param memSize          guest RAM in bytes (the whole RAM, both memslots)
 * @param vcpus            number of vCPUs that will run the image (the guest checks RSI against it)
 * @param seed             random: the permutation each vCPU follows
 * @param stride           stride: touch every {@code stride}-th page
 * @param rounds           hot, phases: passes over the working set (per phase)
 * @param workingSetPages  hot, phases: pages in the working set; 0 = the workload's default
 * @param phases           phases: how many times the working set moves
 */
public record WorkloadParams(long memSize, int vcpus, long seed, int stride, int rounds, int workingSetPages, int phases) {
    public static final long DEFAULT_SEED = 1;
    public static final int DEFAULT_STRIDE = 8;
    public static final int DEFAULT_ROUNDS = 4;
    public static final int DEFAULT_PHASES = 8;

    /** Defaults for everything but the VM's size. */
    public static WorkloadParams of(long memSize, int vcpus) {
        return new WorkloadParams(memSize, vcpus, DEFAULT_SEED, DEFAULT_STRIDE, DEFAULT_ROUNDS, 0, DEFAULT_PHASES);
    }

    public WorkloadParams withSeed(long v) { return new WorkloadParams(memSize, vcpus, v, stride, rounds, workingSetPages, phases); }
    public WorkloadParams withStride(int v) { return new WorkloadParams(memSize, vcpus, seed, v, rounds, workingSetPages, phases); }
    public WorkloadParams withRounds(int v) { return new WorkloadParams(memSize, vcpus, seed, stride, v, workingSetPages, phases); }
    public WorkloadParams withWorkingSetPages(int v) { return new WorkloadParams(memSize, vcpus, seed, stride, rounds, v, phases); }
    public WorkloadParams withPhases(int v) { return new WorkloadParams(memSize, vcpus, seed, stride, rounds, workingSetPages, v); }
}
