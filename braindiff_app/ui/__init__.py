"""The Gradio app: one builder per tab."""
