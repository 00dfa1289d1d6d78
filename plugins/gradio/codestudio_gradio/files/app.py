"""Example Gradio app, created by the codestudio gradio block.

Edit this file in the studio (or in the project's versioned files and sync):
the app restarts when it changes.
"""

import gradio as gr

def greet(name):
    return f"Hello, {name}!"

with gr.Blocks(title="Code Studio app") as demo:
    gr.Markdown("# Hello from your Code Studio")
    name = gr.Textbox(label="Your name", value="Code Studio")
    greeting = gr.Textbox(label="Greeting")
    name.submit(greet, name, greeting)

if __name__ == "__main__":
    demo.launch()
