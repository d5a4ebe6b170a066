# The seed's script, as the user posted it, changed only so that `sym_quant_fuse` comes from the
# bundled case (the first import below). Run it under the doctor with:
#     graphsafe run src/graphsafe/cases/seed/script.py        (or: graphsafe run --seed-script)
from graphsafe.cases.seed import sym_quant_fuse

import torch
import torch.nn as nn
import time
class ModelRunner():
    def __init__(self, model):
        self.model = model
        self.graph_runners = {}  # (int, CUDAGraphRunner)

    @torch.inference_mode()
    def capture_model(self):
        for batch in [1, 2, 3, 4]:
            input = torch.randn((batch, N),dtype=torch.half,device="cuda").cuda()
            graph_runner = CUDAGraphRunner(self.model)
            graph_runner.capture(input)
            self.graph_runners[batch] = graph_runner

    @torch.inference_mode()
    def execute_model(self, x):
        batch = x.size(0)
        if batch in self.graph_runners:
            model_executable = self.graph_runners[batch]
        else:
            print(f"warning, no cudagraph_runner, back to origin model")
            model_executable = self.model
        return model_executable(x)


class CUDAGraphRunner():
    def __init__(self, model):
        self.model = model
        self.cuda_graph = None
        self.graph_input = None
        self.graph_output = None

    def capture(self, x):
        assert self.cuda_graph is None

        self.cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.cuda_graph):
            out = self.model(x)
        torch.cuda.synchronize()

        self.graph_input = x
        self.graph_output = out

    def forward(self, x):
        self.graph_input.copy_(x)
        self.cuda_graph.replay()
        return self.graph_output

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

class model_w4a4(nn.Module):
    def __init__(self,m,n,k):
        super().__init__()
        self.weight = torch.randint(1,7,(k,n//2),dtype=torch.uint8,device="cuda")
        self.weight_scale = torch.rand((k,1),dtype=torch.half,device="cuda")
        self.scale = torch.randn((m,1),dtype=torch.half, device="cuda")
        self.q = torch.randint(1,7,(m,n//2),dtype=torch.uint8,device="cuda")
        print(self.q)
    def forward(self,input):
        q,scale = sym_quant_fuse(input)
        # c =matmul(self.q,self.weight)
        #x =sym_dequant(c,self.scale,self.weight_scale)
        return scale
M = 1
N = 3584
K = 3584+512*2
# model = nn.Linear(N,K).cuda()
# model = model.to(torch.half)
model = model_w4a4(M,N,K)
model.eval()
input = torch.randn((M,N),dtype=torch.half,device="cuda")
output_ref = model(input)
scale_gt = (torch.max(torch.abs(input), dim=-1)[0].unsqueeze(1)/7).to(torch.float16)
print("scalegt:",scale_gt)
model_runner = ModelRunner(model)
model_runner.capture_model()
time.sleep(5)
output = model_runner.execute_model(input)
print(output_ref)
print(output)
