// Whether the process behind a request is in a group: its fsgid, or one of
// its supplementary groups, as the kernel's in_group_p asks. FUSE requests
// carry only uid, gid and pid; the supplementary groups are read from
// /proc/PID/status (as libfuse's fuse_req_getgroups does) and only when an
// answer depends on them (set-group-ID without group-execute: rare).
import { readFile } from 'node:fs/promises';

export interface GroupMember {
  gid: number;
  pid: number;
}

/** True when `caller`'s gid or one of its supplementary groups is `gid`; a process whose groups cannot be read (gone) is taken as not in it. */
export async function callerInGroup(caller: GroupMember, gid: number): Promise<boolean> {
  if (caller.gid === gid) return true;
  if (caller.pid <= 0) return false;
  let status: string;
  try {
    status = await readFile(`/proc/${caller.pid}/status`, 'latin1');
  } catch {
    return false;
  }
  const line = /^Groups:\s*(.*)$/m.exec(status);
  if (line === null) return false;
  return line[1]!.trim().split(/\s+/).filter((g) => g.length > 0).map(Number).includes(gid);
}
