#!/usr/bin/env python3
# Usage: scripts/module-cycles.py [MODULE]   (from the repository root; with MODULE, the edges of its circle)
# Import circles between the crate's modules (file level): SCCs of the `use` graph,
# ignoring #[cfg(test)] modules.
import os,re,sys
root='src'
mods={}
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f)[len(root)+1:-3]
        parts=p.split('/')
        if parts[-1] in ('mod','lib','main'): parts=parts[:-1]
        mods['::'.join(parts)]=os.path.join(dp,f)
def resolve(cur,path):
    segs=path.split('::')
    if segs[0]=='crate': base=[]; segs=segs[1:]
    elif segs[0]=='super':
        base=cur.split('::')[:-1] if cur else []
        segs=segs[1:]
        while segs and segs[0]=='super': base=base[:-1]; segs=segs[1:]
    else: return None
    best=None
    for i in range(len(segs),0,-1):
        m='::'.join(base+segs[:i])
        if m in mods: return m
    return None
edges={m:set() for m in mods}
for m,p in mods.items():
    t=open(p).read()
    i=t.find('#[cfg(test)]\nmod tests')
    if i>=0: t=t[:i]
    t=re.sub(r'//.*','',t)
    for mt in re.finditer(r'\b((?:crate|super)(?:::super)*(?:::[A-Za-z_][A-Za-z0-9_]*)+)',t):
        r=resolve(m,mt.group(1))
        if r and r!=m and not m.startswith(r+'::') and not r.startswith(m+'::') and r!='': edges[m].add(r)
# tarjan
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(sorted(comp))
for v in mods:
    if v not in idx: sc(v)
for comp in out: print(' <-> '.join(comp))
if len(sys.argv)>1:
    for comp in out:
        if sys.argv[1] in comp:
            for a in comp:
                for b in sorted(edges[a]):
                    if b in comp: print(a,'->',b)
