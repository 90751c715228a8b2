package dev.faultline.vmm;

import java.util.List;
import java.util.Map;

/** The outcome of one machine run: every vCPU's result, the RAM hash and timings. */
public record RunReport(String backend, long ramSize, List<VcpuResult> vcpus, String ramSha256,
                        Map<String, Long> exitCounts, long setupNanos, long runNanos) {

    public boolean clean() {
        return vcpus.stream().allMatch(v -> v.outcome().isClean() && v.doneCode() == 0);
    }
}
