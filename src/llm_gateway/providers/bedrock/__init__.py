"""The `bedrock` provider type: Amazon Bedrock Converse / ConverseStream and InvokeModel embeddings."""
